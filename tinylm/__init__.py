"""tinylm: build, train, sample, evaluate and compare small generative language models with PyTorch.

The pipeline, one stage per module:  data -> tokenizers -> models -> training -> generation -> evaluation

    import tinylm
    config = tinylm.RunConfig(model=tinylm.model_config("gru", hidden=128))
    run = tinylm.train(config, out="runs/gru")          # returns the best checkpoint, loaded
    print(run.generate("ROMEO:", temperature=0.8))
    run = tinylm.load("runs/gru"); run.evaluate()

The names below load on first use (PEP 562): `import tinylm` itself imports neither torch nor anything
heavy, so a script that needs one name pays only for it, and the `tinylm` command answers a Ctrl-C while
torch is still loading with one line.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

from ._version import __version__

_EXPORTS = {
    "PRESETS": "presets", "DataConfig": "config", "RunConfig": "config", "TrainConfig": "config",
    "TokenizerConfig": "tokenizers", "TinyLMError": "errors", "EvalResult": "evaluation",
    "FinetuneConfig": "finetune", "finetune": "finetune", "SamplingConfig": "generation",
    "tempered_softmax": "generation", "model_config": "models", "LoadedModel": "runs", "load": "hub",
    "export_run": "export", "push": "hub", "resume": "training", "train": "training", "compare": "compare",
    "memorisation": "memorisation", "plot_softmax": "temperature", "temperature_report": "temperature",
    "prepare": "data.tokenfile", "open_prepared": "data.tokenfile", "environment": "environment",
    "serve": "app",  # the web playground needs gradio (optional, slow to import)
}

# Written out (not built from _EXPORTS): linters and type checkers read __all__ without running the module, and
# the TYPE_CHECKING imports below count as used through it. tests/test_imports.py checks the two agree.
__all__ = [
    "__version__", "PRESETS", "DataConfig", "RunConfig", "TrainConfig", "TokenizerConfig", "TinyLMError",
    "EvalResult", "FinetuneConfig", "finetune", "SamplingConfig", "tempered_softmax", "model_config", "LoadedModel",
    "export_run", "load", "push", "resume", "train", "compare", "memorisation", "plot_softmax",
    "temperature_report", "prepare", "open_prepared", "environment", "serve",
]


class _Package(types.ModuleType):
    """Keeps `tinylm.compare` (and the other functions named like their module) the function: importing the
    submodule would otherwise set the package's attribute to the module."""

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tinylm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what type checkers and editors see
    from .compare import compare
    from .config import DataConfig, RunConfig, TrainConfig
    from .data.tokenfile import open_prepared, prepare
    from .environment import environment
    from .errors import TinyLMError
    from .evaluation import EvalResult
    from .export import export_run
    from .finetune import FinetuneConfig, finetune
    from .generation import SamplingConfig, tempered_softmax
    from .hub import load, push
    from .memorisation import memorisation
    from .models import model_config
    from .presets import PRESETS
    from .runs import LoadedModel
    from .temperature import plot_softmax, temperature_report
    from .tokenizers import TokenizerConfig
    from .training import resume, train
