"""Stage 4: the training loop, checkpoints and exact resume."""

from .budget import Interrupted, lr_at
from .loop import TrainingState, resume, train

__all__ = ["Interrupted", "TrainingState", "lr_at", "resume", "train"]
