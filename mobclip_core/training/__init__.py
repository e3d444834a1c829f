"""Training: data preparation, LINE pre-encoding, model building, one fit loop with early stopping and exact resume."""

from .early_stopping import EarlyStopping
from .trainer import TrainResult, train_mobclip

__all__ = ["EarlyStopping", "TrainResult", "train_mobclip"]
