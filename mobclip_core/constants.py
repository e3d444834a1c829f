"""Names shared across the library: index names, CRS, defaults."""

REGION_INDEX = "h3_cell"
"""Name of the index of every per-cell table (H3 cell id as a 15-character hex string)."""

WGS84_CRS = "EPSG:4326"

H3_MIN_RESOLUTION = 0
H3_MAX_RESOLUTION = 15

EMBEDDING_PREFIX = "emb_"

SECONDS_PER_WEEK = 7 * 24 * 3600
# 1970-01-01 was a Thursday: shifting by three days makes weeks start on Monday (ISO weeks).
WEEK_EPOCH_SHIFT_SECONDS = 3 * 24 * 3600

MODALITIES = ("poi", "image", "demographics")
"""Auxiliary modalities aligned to the mobility anchor."""

DEFAULT_TEMPERATURES = {"poi": 0.5, "demographics": 0.7, "image": 0.2}
"""Fixed per-modality InfoNCE temperatures of the public MobCLIP code."""
