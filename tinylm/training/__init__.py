"""Stage 4: the training loop, checkpoints and exact resume."""

from .loop import Interrupted, TrainingState, lr_at, resume, train

__all__ = ["Interrupted", "TrainingState", "lr_at", "resume", "train"]
