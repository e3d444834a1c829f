"""Real spherical harmonics in SatCLIP's analytic convention, computed by stable recurrences.

Convention (the one SatCLIP's and MobCLIP's published weights were trained against):
theta = radians(lat + 90) measured from the south pole, phi = radians(lon + 180); features ordered
l = 0..L-1, m = -l..l (L^2 in all); associated Legendre functions without the Condon-Shortley phase;
m > 0: sqrt(2) N_lm P_l^m(cos theta) cos(m phi); m < 0: sqrt(2) N_l|m| P_l^|m|(cos theta) sin(|m| phi);
m = 0: pi * N_l0 P_l(cos theta) -- the generator behind SatCLIP's file wrote sqrt((2l+1)/4*pi), so every m = 0 term
is pi times the orthonormal value (Y00 = sqrt(pi)/2 = 0.886226925...). N_lm = sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!).

The normalised Legendre values N_lm P_l^m come from the standard three-term recurrences (no factorials, no
symbolic expressions), stable to L in the hundreds.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .._optional import import_optional


@lru_cache(maxsize=16)
def _tables(L: int):
    """Recurrence coefficients and the (l, |m|, m, scale) of each output feature, for degree L."""
    a = np.zeros((L, L))
    b = np.zeros((L, L))
    for l in range(2, L):  # noqa: E741 - l is the degree, as in every text on spherical harmonics
        m = np.arange(l - 1)
        a[l, : l - 1] = np.sqrt((4.0 * l * l - 1) / (l * l - m * m))
        b[l, : l - 1] = np.sqrt(((l - 1.0) ** 2 - m * m) / (4.0 * (l - 1.0) ** 2 - 1))
    k = np.arange(1, L)
    diag = np.concatenate([[1.0], np.cumprod(np.sqrt((2 * k + 1) / (2.0 * k)))]) / math.sqrt(4.0 * math.pi)
    sub = np.sqrt(2.0 * np.arange(L) + 3)
    ls, ms = zip(*[(l, m) for l in range(L) for m in range(-l, l + 1)])  # noqa: E741
    ls, ms = np.array(ls), np.array(ms)
    scale = np.where(ms == 0, math.pi, math.sqrt(2.0))  # pi on m = 0: SatCLIP's published convention
    return a, b, diag, sub, ls, np.abs(ms), ms + (L - 1), scale


def _sh(lon, lat, L: int, xp):
    """Features (N, L^2); ``xp`` is numpy or torch. Legendre values by recurrence over l, vectorized over m."""
    a, b, diag, sub, ls, ams, mcol, scale = _tables(L)
    t = (lambda v: xp.asarray(v, dtype=lon.dtype)) if xp is np else (lambda v: xp.as_tensor(v, dtype=lon.dtype))
    theta = (lat + 90.0) * (math.pi / 180.0)
    phi = (lon + 180.0) * (math.pi / 180.0)
    x, sin_t = xp.cos(theta), xp.sin(theta)
    n = lon.shape[0]
    q = xp.zeros((n, L, L), dtype=lon.dtype) if xp is np else xp.zeros((n, L, L), dtype=lon.dtype)
    powers = sin_t[:, None] ** t(np.arange(L, dtype=np.float64))[None, :]
    mm = np.arange(L)
    q[:, mm, mm] = t(diag)[None, :] * powers  # Q_mm = c_m sin^m(theta)
    if L > 1:
        q[:, mm[:-1] + 1, mm[:-1]] = t(sub[:-1])[None, :] * x[:, None] * q[:, mm[:-1], mm[:-1]]
    ta, tb = t(a), t(b)
    for l in range(2, L):  # noqa: E741
        k = l - 1
        q[:, l, :k] = ta[l, :k] * (x[:, None] * q[:, l - 1, :k] - tb[l, :k] * q[:, l - 2, :k])
    m = t(np.arange(L, dtype=np.float64))
    cos_m, sin_m = xp.cos(phi[:, None] * m), xp.sin(phi[:, None] * m)
    flip = np.arange(L - 1, 0, -1)
    trig = xp.concatenate([sin_m[:, flip], cos_m], 1) if xp is np else xp.cat([sin_m[:, flip], cos_m], 1)
    return q[:, ls, ams] * trig[:, mcol] * t(scale)[None, :]


def _sh_torch(lon, lat, L: int):
    """The features of ``_sh`` for torch tensors, laid out (degree, order, point) so that every step of the
    recurrence is one contiguous block: several times fewer passes over memory than the (point, l, m) layout, and
    no gathers. Same recurrences and coefficients, hence the same values to rounding."""
    import torch

    a, b, diag, sub, _, _, _, _ = _tables(L)
    dtype, device = lon.dtype, lon.device
    t = lambda v: torch.as_tensor(v, dtype=dtype, device=device)  # noqa: E731
    theta = (lat + 90.0) * (math.pi / 180.0)
    phi = (lon + 180.0) * (math.pi / 180.0)
    x, sin_t = torch.cos(theta), torch.sin(theta)
    n = lon.shape[0]
    m = t(np.arange(L, dtype=np.float64))[:, None]
    q = torch.empty((L, L, n), dtype=dtype, device=device)  # q[l, m] = N_lm P_l^m(cos theta), m <= l
    q_mm = t(diag)[:, None] * sin_t[None, :] ** m  # Q_mm = c_m sin^m(theta)
    cos_m, sin_m = torch.cos(m * phi[None, :]), torch.sin(m * phi[None, :])
    out = torch.empty((L * L, n), dtype=dtype, device=device)
    root2, ta, tb, tsub = math.sqrt(2.0), t(a)[:, :, None], t(b)[:, :, None], t(sub)[:, None]
    for l in range(L):  # noqa: E741 - l is the degree, as in every text on spherical harmonics
        q[l, l] = q_mm[l]
        if l >= 1:
            q[l, l - 1] = tsub[l - 1] * x * q[l - 1, l - 1]
        if l >= 2:
            k = l - 1
            q[l, :k] = ta[l, :k] * (x * q[l - 1, :k] - tb[l, :k] * q[l - 2, :k])
        row = l * l + l  # m = 0 is at row l^2 + l; m > 0 after it, m < 0 before it in order -l..-1
        out[row] = math.pi * q[l, 0] * cos_m[0]
        if l >= 1:
            torch.mul(q[l, 1 : l + 1], cos_m[1 : l + 1], out=out[row + 1 : row + l + 1]).mul_(root2)
            torch.mul(q[l, 1 : l + 1], sin_m[1 : l + 1], out=out[l * l : row]).mul_(root2)
            out[l * l : row] = out[l * l : row].flip(0)
    return out.T


def spherical_harmonics(lon, lat, degree: int = 32) -> np.ndarray:
    """SH features (N, degree^2) of WGS84 degrees, float64 numpy."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    out = [_sh(lon[s : s + 4096], lat[s : s + 4096], degree, np) for s in range(0, lon.size, 4096)]
    return np.concatenate(out) if out else np.zeros((0, degree * degree))


class SphericalHarmonics:
    """Torch module factory: ``SphericalHarmonics(L)(coords[N, 2] lon/lat degrees) -> (N, L^2)``."""

    def __new__(cls, degree: int = 32):
        torch = import_optional("torch")

        class _SH(torch.nn.Module):
            def __init__(self, degree: int) -> None:
                super().__init__()
                self.degree = degree
                self.embedding_dim = degree * degree

            def forward(self, coords):
                with torch.no_grad():  # no learnable parameters; coordinates are inputs
                    if coords.device.type == "cpu":  # compiled, ~10x faster than the tensor recurrence
                        from ._sh_kernel import sh_features

                        np_dtype = np.float64 if coords.dtype == torch.float64 else np.float32
                        lonlat = coords.detach().numpy()
                        feats = sh_features(lonlat[:, 0], lonlat[:, 1], self.degree, np_dtype)
                        return torch.from_numpy(feats).to(coords.dtype)
                    return _sh_torch(coords[:, 0].contiguous(), coords[:, 1].contiguous(), self.degree)

        return _SH(degree)
