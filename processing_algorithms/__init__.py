"""QGIS Processing algorithms of the MobCLIP plugin, one module per algorithm over a shared base."""

from .aggregate_embeddings import AggregateEmbeddings
from .attach_embeddings import AttachEmbeddings
from .embedding_raster import EmbeddingRaster
from .fit_lightgbm import FitLightGBM
from .tessellate import TessellateToH3
from .train_embeddings import TrainEmbeddings

ALGORITHMS = (TessellateToH3, AttachEmbeddings, AggregateEmbeddings, FitLightGBM, EmbeddingRaster, TrainEmbeddings)

__all__ = ["ALGORITHMS"]
