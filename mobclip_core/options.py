"""Typed options, defined once: the config, the CLI and the QGIS parameters all take their choices from here."""

from __future__ import annotations

from enum import StrEnum


class Sampling(StrEnum):
    """How the mobility graph is thinned for LightGCN."""

    TOP_K = "top_k"
    RANDOM = "random"


class Engine(StrEnum):
    """Where activity records become a co-presence graph."""

    MEMORY = "memory"
    DUCKDB = "duckdb"
    SPARK = "spark"


class LineOrder(StrEnum):
    FIRST = "first"
    SECOND = "second"
    BOTH = "both"


class LineEngine(StrEnum):
    """Which LINE implementation trains the node table."""

    NUMBA = "numba"  # compiled lock-free SGD on the CPU cores (the default)
    TORCH = "torch"  # batched torch updates: for comparison, a GPU, or a torchrun process group


class GraphEncoder(StrEnum):
    LIGHTGCN = "lightgcn"
    MLP = "mlp"  # ablation: no graph encoder


class NodeInit(StrEnum):
    LINE = "line"
    RANDOM = "random"  # ablation: no LINE initialisation


class OutputTower(StrEnum):
    """What a trained model exports per cell."""

    FUSED = "fused"  # mean of the aligned towers each cell has
    MOBILITY = "mobility"  # the mobility tower alone (the paper's output)


class Containment(StrEnum):
    """Which cells a polygon gets."""

    CENTER = "center"  # cells whose centre lies inside (a partition: aggregation over admin units)
    OVERLAP = "overlap"  # every cell touching the polygon


class PositionalEncoding(StrEnum):
    """The distilled coordinate encoder's input features."""

    SH_FOURIER = "sh+fourier"  # spherical harmonics plus local Fourier features (city scale)
    SH = "sh"  # spherical harmonics only (the published MobCLIP layout)


class ZoneMethod(StrEnum):
    KMEANS = "kmeans"
    HDBSCAN = "hdbscan"


class SpaceMethod(StrEnum):
    """How the embedding space is drawn in 2-D."""

    AUTO = "auto"  # UMAP when umap-learn is installed, else PCA
    UMAP = "umap"
    PCA = "pca"


class PoiEncoder(StrEnum):
    TEXT = "text"
    COUNTS = "counts"


class ImageEncoder(StrEnum):
    OPEN_CLIP = "open_clip"
    STATS = "stats"


def choices(option: type[StrEnum]) -> list[str]:
    """The allowed values, in definition order (for argparse and QGIS enum parameters)."""
    return [m.value for m in option]
