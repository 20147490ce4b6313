"""tinylm: build, train, sample, evaluate and compare small generative language models with PyTorch.

The pipeline, one stage per module:  data -> tokenizers -> models -> training -> generation -> evaluation

    import tinylm
    config = tinylm.RunConfig(model=tinylm.model_config("gru", hidden=128))
    run = tinylm.train(config, out="runs/gru")          # returns the best checkpoint, loaded
    print(run.generate("ROMEO:", temperature=0.8))
    run = tinylm.load("runs/gru"); run.evaluate()
"""

from ._version import __version__
from .config import DataConfig, RunConfig, TrainConfig
from .errors import TinyLMError
from .evaluation import EvalResult
from .generation import SamplingConfig, tempered_softmax
from .models import model_config
from .presets import PRESETS
from .runs import LoadedModel, load
from .tokenizers import TokenizerConfig
from .training import resume, train

__all__ = [
    "__version__", "PRESETS", "DataConfig", "RunConfig", "TrainConfig", "TokenizerConfig", "TinyLMError",
    "EvalResult", "SamplingConfig", "tempered_softmax", "model_config", "LoadedModel", "load", "resume", "train",
]
