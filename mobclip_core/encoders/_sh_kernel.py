"""Compiled spherical harmonics: one point per loop iteration, every recurrence in registers, float64 inside.

The torch version (``spherical_harmonics._sh_torch``) runs each recurrence step as a tensor operation over all
points: some hundred passes over an (L, L, N) array. Here each point's Legendre rows live in three short arrays and
its features are written once, so the cost is the L^2 outputs per point and no more; computing in float64 also makes
the float32 features exact to rounding (the torch float32 path drifts by up to 2e-4 at L = 32).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..threads import serialized


@njit(cache=True, parallel=True)
def _sh_rows(lon, lat, a, b, diag, sub, out):
    """Fill ``out[i]`` (L^2 features, SatCLIP's order and scales) for every point i."""
    L = diag.shape[0]
    root2 = math.sqrt(2.0)
    for i in prange(lon.shape[0]):
        theta = (lat[i] + 90.0) * (math.pi / 180.0)
        phi = (lon[i] + 180.0) * (math.pi / 180.0)
        x, s = math.cos(theta), math.sin(theta)
        c1, s1 = math.cos(phi), math.sin(phi)
        prev2, prev1, cur = np.zeros(L), np.zeros(L), np.zeros(L)
        cos_m, sin_m = np.empty(L), np.empty(L)
        cos_m[0], sin_m[0] = 1.0, 0.0
        for m in range(1, L):  # angle addition: a few ulps off cos(m phi) for m < 100
            cos_m[m] = cos_m[m - 1] * c1 - sin_m[m - 1] * s1
            sin_m[m] = sin_m[m - 1] * c1 + cos_m[m - 1] * s1
        s_pow = 1.0
        for l in range(L):  # noqa: E741 - l is the degree
            if l > 0:
                s_pow *= s
            for m in range(l - 1):
                cur[m] = a[l, m] * (x * prev1[m] - b[l, m] * prev2[m])
            if l >= 1:
                cur[l - 1] = sub[l - 1] * x * prev1[l - 1]
            cur[l] = diag[l] * s_pow
            row = l * l + l  # m = 0 at l^2 + l; m > 0 after it; m < 0 before it, -l first
            out[i, row] = math.pi * cur[0]
            for m in range(1, l + 1):
                out[i, row + m] = root2 * cur[m] * cos_m[m]
                out[i, row - m] = root2 * cur[m] * sin_m[m]
            prev2, prev1, cur = prev1, cur, prev2
    return out


@serialized
def sh_features(lon: np.ndarray, lat: np.ndarray, degree: int, dtype=np.float32) -> np.ndarray:
    """Features (N, degree^2) of WGS84 degrees, as ``spherical_harmonics`` computes them, in ``dtype``."""
    from .spherical_harmonics import _tables

    a, b, diag, sub, *_ = _tables(degree)
    lon = np.ascontiguousarray(lon, dtype=np.float64)
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    out = np.empty((lon.size, degree * degree), dtype=dtype)
    return _sh_rows(lon, lat, a, b, diag, sub, out)
