"""Location encoders: analytic position encodings, SIREN, GeoCLIP, and the distilled MobCLIP encoder."""

from .positional import nerf_features, raw_coordinates, sphere2vec_sphere_c_plus, validate_coordinates
from .spherical_harmonics import SphericalHarmonics, spherical_harmonics

__all__ = [
    "SphericalHarmonics",
    "nerf_features",
    "raw_coordinates",
    "sphere2vec_sphere_c_plus",
    "spherical_harmonics",
    "validate_coordinates",
]
