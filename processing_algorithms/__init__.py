"""QGIS Processing algorithms of the MobCLIP plugin, one module per algorithm over a shared base."""

from .aggregate_embeddings import AggregateEmbeddings
from .attach_embeddings import AttachEmbeddings
from .distil_encoder import DistilEncoder
from .embedding_change import EmbeddingChange
from .embedding_raster import EmbeddingRaster
from .embedding_space import EmbeddingSpace
from .fit_lightgbm import FitLightGBM
from .functional_zones import FunctionalZones
from .shared_pca_rgb import SharedPcaRgb
from .similar_places import SimilarPlaces
from .tessellate import TessellateToH3
from .train_embeddings import TrainEmbeddings
from .write_training_config import WriteTrainingConfig

ALGORITHMS = (
    TessellateToH3,
    AttachEmbeddings,
    AggregateEmbeddings,
    FitLightGBM,
    EmbeddingRaster,
    TrainEmbeddings,
    WriteTrainingConfig,
    DistilEncoder,
    # analysis (issue #15)
    SimilarPlaces,
    FunctionalZones,
    EmbeddingSpace,
    SharedPcaRgb,
    EmbeddingChange,
)

__all__ = ["ALGORITHMS"]
