"""SIREN (Sitzmann et al. 2020) on spherical harmonics, as in SatCLIP's location encoder.

First layer: sin(w0_initial * (W x + b)) with w0_initial = 30 and weights U(-1/d_in, 1/d_in); later layers:
sin(W x + b) with weights U(-sqrt(6/d)/w0, sqrt(6/d)/w0), w0 = 1; a linear last layer. SatCLIP trains it with
dropout 0.5 in hidden layers (``dropout``). Used two ways: as the network of a distilled encoder, and, with a fixed
seed and no training, as the paper's "Siren" analytic baseline (a random sinusoidal feature map of SH features).
"""

from __future__ import annotations

import math

import numpy as np

from .._optional import import_optional
from .spherical_harmonics import SphericalHarmonics


def siren_network(
    in_dim: int,
    hidden: int = 256,
    layers: int = 2,
    out_dim: int = 256,
    *,
    w0_initial: float = 30.0,
    w0: float = 1.0,
    dropout: float = 0.0,
):
    torch = import_optional("torch")
    nn = torch.nn

    class Sine(nn.Module):
        def __init__(self, d_in: int, d_out: int, w: float, first: bool) -> None:
            super().__init__()
            self.linear = nn.Linear(d_in, d_out)
            self.w = w
            bound = 1.0 / d_in if first else math.sqrt(6.0 / d_in) / w
            nn.init.uniform_(self.linear.weight, -bound, bound)
            nn.init.uniform_(self.linear.bias, -bound, bound)

        def forward(self, x):
            return torch.sin(self.w * self.linear(x))

    mods = [Sine(in_dim, hidden, w0_initial, True)]
    for _ in range(layers - 1):
        if dropout:
            mods.append(nn.Dropout(dropout))
        mods.append(Sine(hidden, hidden, w0, False))
    mods.append(nn.Linear(hidden, out_dim))
    return nn.Sequential(*mods)


def siren_encoder(degree: int = 32, hidden: int = 256, layers: int = 2, out_dim: int = 256, seed: int = 0):
    """An untrained SH + SIREN feature map ``(lon, lat) -> (N, out_dim)`` with a fixed seed (the analytic baseline)."""
    torch = import_optional("torch")
    sh = SphericalHarmonics(degree)
    with torch.random.fork_rng(devices=[]):  # weights from the seed; the global generator is left as it was
        torch.manual_seed(seed)
        net = siren_network(degree * degree, hidden, layers, out_dim).double().eval()

    def encode(lon, lat) -> np.ndarray:
        coords = torch.tensor(np.c_[lon, lat], dtype=torch.float64)
        with torch.inference_mode():
            return net(sh(coords)).numpy()

    return encode
