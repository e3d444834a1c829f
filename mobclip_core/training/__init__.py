"""Training: LINE pre-encoding, contrastive MobCLIP training with early stopping, checkpoints and logs."""

from .trainer import TrainResult, train_mobclip

__all__ = ["TrainResult", "train_mobclip"]
