"""Location-encoder baselines as ``(lon, lat) -> features`` functions for the evaluation harness."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._optional import import_optional
from .positional import nerf_features, raw_coordinates, sphere2vec_sphere_c_plus, validate_coordinates
from .siren import siren_encoder
from .spherical_harmonics import spherical_harmonics


def geoclip_encoder(batch_size: int = 4096) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """GeoCLIP's pretrained location encoder (512-d), with the weights its PyPI package ships (no download)."""
    torch = import_optional("torch")
    module = import_optional("geoclip.model.location_encoder")
    model = module.LocationEncoder().eval()  # loads the bundled location_encoder_weights.pth

    def encode(lon, lat) -> np.ndarray:
        lon, lat = validate_coordinates(lon, lat)
        out = []
        with torch.inference_mode():
            for s in range(0, lon.size, batch_size):
                coords = torch.tensor(np.c_[lat[s : s + batch_size], lon[s : s + batch_size]], dtype=torch.float32)
                out.append(model(coords).numpy())  # GeoCLIP takes (lat, lon)
        return np.concatenate(out) if out else np.zeros((0, 512))

    return encode


def baseline_encoders(
    sh_degree: int = 10, with_siren: bool = False
) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """The analytic baselines of the paper plus GeoCLIP (when installed)."""
    encoders = {
        f"SH (L={sh_degree})": lambda lon, lat: spherical_harmonics(lon, lat, sh_degree),
        "Sphere2Vec sphereC+": sphere2vec_sphere_c_plus,
        "NeRF": nerf_features,
        "raw coordinates": raw_coordinates,
    }
    if with_siren:
        encoders["SH + SIREN (untrained)"] = siren_encoder(degree=sh_degree)
    try:
        encoders["GeoCLIP"] = geoclip_encoder()
    except ImportError:
        pass
    return encoders
