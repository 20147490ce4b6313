"""tinylm: build, train, sample, evaluate and compare small generative language models with PyTorch.

The pipeline, one stage per module:  data -> tokenizers -> models -> training -> generation -> evaluation

    import tinylm
    config = tinylm.RunConfig(model=tinylm.model_config("gru", hidden=128))
    run = tinylm.train(config, out="runs/gru")          # returns the best checkpoint, loaded
    print(run.generate("ROMEO:", temperature=0.8))
    run = tinylm.load("runs/gru"); run.evaluate()
"""

from ._version import __version__
from .compare import compare
from .config import DataConfig, RunConfig, TrainConfig
from .data.tokenfile import open_prepared, prepare
from .errors import TinyLMError
from .evaluation import EvalResult
from .export import export_run
from .finetune import FinetuneConfig, finetune
from .generation import SamplingConfig, tempered_softmax
from .hub import push
from .memorisation import memorisation
from .models import model_config
from .presets import PRESETS
from .runs import LoadedModel, load
from .temperature import plot_softmax, temperature_report
from .tokenizers import TokenizerConfig
from .training import resume, train

__all__ = [
    "__version__", "PRESETS", "DataConfig", "RunConfig", "TrainConfig", "TokenizerConfig", "TinyLMError",
    "EvalResult", "FinetuneConfig", "finetune", "SamplingConfig", "tempered_softmax", "model_config", "LoadedModel",
    "export_run", "load", "push", "resume", "train",
    "compare", "memorisation", "plot_softmax", "temperature_report", "prepare", "open_prepared",
    "serve",
]


def __getattr__(name: str):
    # `tinylm.serve` (the web playground) needs gradio, slow to import and optional: loaded on first use.
    if name == "serve":
        from .app import serve

        return serve
    raise AttributeError(f"module 'tinylm' has no attribute {name!r}")
