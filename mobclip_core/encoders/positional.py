"""Analytic location encodings used as baselines: raw coordinates, Sphere2Vec sphereC+, NeRF Fourier features."""

from __future__ import annotations

import numpy as np

from ..grid.geometry import validate_lonlat


def validate_coordinates(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    return validate_lonlat(lon, lat, what="coordinates")


def raw_coordinates(lon, lat) -> np.ndarray:
    """(lon, lat) in degrees as two features."""
    lon, lat = validate_coordinates(lon, lat)
    return np.c_[lon, lat]


def _scales(n_scales: int, min_radius: float, max_radius: float = 1.0) -> np.ndarray:
    """Geometric frequencies 1/r_s for radii from max_radius down to min_radius (radians)."""
    radii = max_radius * (min_radius / max_radius) ** (np.arange(n_scales) / max(n_scales - 1, 1))
    return 1.0 / radii


def sphere2vec_sphere_c_plus(lon, lat, n_scales: int = 16, min_radius: float = 1e-3) -> np.ndarray:
    """Sphere2Vec sphereC+ (Mai et al. 2023): multi-scale sphereC terms plus their mixed-scale companions.

    Per scale s with frequency f_s: [sin(f lat), cos(f lat) cos(f lon), cos(f lat) sin(f lon)] and
    [cos(lat) cos(f lon), cos(lat) sin(f lon), sin(f lat)]; 6 * n_scales features (96 by default).
    """
    lon, lat = validate_coordinates(lon, lat)
    lam, phi = np.radians(lon)[:, None], np.radians(lat)[:, None]
    f = _scales(n_scales, min_radius)[None, :]
    fp, fl = f * phi, f * lam
    parts = [
        np.sin(fp),
        np.cos(fp) * np.cos(fl),
        np.cos(fp) * np.sin(fl),
        np.cos(phi) * np.cos(fl),
        np.cos(phi) * np.sin(fl),
        np.sin(fp) * np.cos(phi),
    ]
    return np.concatenate(parts, axis=1)


def nerf_features(lon, lat, n_frequencies: int = 16) -> np.ndarray:
    """NeRF positional encoding of the 3-D unit vector: sin/cos(2^k pi x) for x, y, z; 6 * n_frequencies features."""
    lon, lat = validate_coordinates(lon, lat)
    lam, phi = np.radians(lon), np.radians(lat)
    xyz = np.c_[np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)]
    freq = (2.0 ** np.arange(n_frequencies)) * np.pi
    arg = xyz[:, :, None] * freq[None, None, :]
    return np.concatenate([np.sin(arg).reshape(len(lon), -1), np.cos(arg).reshape(len(lon), -1)], axis=1)
