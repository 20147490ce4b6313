"""Stage 4, the engines: tinylm's own loop (loop.py, with budget, optim, checkpoint and distributed), the
transformers Trainer (finetune.py) and Lightning (lightning.py), each reporting to tinylm.run.session.RunSession;
presets.py holds the named recipes."""

from .budget import Interrupted, lr_at
from .loop import TrainingState, resume, train

__all__ = ["Interrupted", "TrainingState", "lr_at", "resume", "train"]
