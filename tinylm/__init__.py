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
    "PRESETS": "training.presets", "DataConfig": "config", "RunConfig": "config", "TrainConfig": "config",
    "TokenizerConfig": "tokenizers", "TinyLMError": "errors", "EvalResult": "evaluation.scoring",
    "FinetuneConfig": "training.finetune", "finetune": "training.finetune", "SamplingConfig": "generation.sampling",
    "tempered_softmax": "generation.sampling", "model_config": "models", "LoadedModel": "loading",
    "load": "publishing.hub", "export_run": "publishing.export", "push": "publishing.hub", "resume": "training",
    "train": "training", "compare": "lab.compare", "memorisation": "evaluation.memorisation",
    "plot_softmax": "lab.temperature", "temperature_report": "lab.temperature",
    "prepare": "data.tokenfile", "open_prepared": "data.tokenfile", "environment": "machine.report",
    "serve": "lab.playground",  # the web playground needs gradio (optional, slow to import)
    "build_space": "publishing.space", "push_space": "publishing.space",
}

# The modules' earlier paths, kept for one release (0.1 -> 0.2): `import tinylm.hub` is tinylm.publishing.hub itself
# (the same module object), so code written against them keeps working; tinylm/_aliases.py resolves them.
from . import _aliases  # noqa: E402, F401 - it registers the old paths

# Written out (not built from _EXPORTS): linters and type checkers read __all__ without running the module, and
# the TYPE_CHECKING imports below count as used through it. tests/test_imports.py checks the two agree.
__all__ = [
    "__version__", "PRESETS", "DataConfig", "RunConfig", "TrainConfig", "TokenizerConfig", "TinyLMError",
    "EvalResult", "FinetuneConfig", "finetune", "SamplingConfig", "tempered_softmax", "model_config", "LoadedModel",
    "export_run", "load", "push", "resume", "train", "compare", "memorisation", "plot_softmax",
    "temperature_report", "prepare", "open_prepared", "environment", "serve", "build_space", "push_space",
]


class _Package(types.ModuleType):
    """Keeps `tinylm.compare` (and the other functions named like their module) the function: importing the
    submodule would otherwise set the package's attribute to the module."""

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):  # a submodule or an old path's (tinylm._aliases)
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
    from .config import DataConfig, RunConfig, TrainConfig
    from .data.tokenfile import open_prepared, prepare
    from .errors import TinyLMError
    from .evaluation.memorisation import memorisation
    from .evaluation.scoring import EvalResult
    from .generation.sampling import SamplingConfig, tempered_softmax
    from .lab.compare import compare
    from .lab.playground import serve
    from .lab.temperature import plot_softmax, temperature_report
    from .loading import LoadedModel
    from .machine.report import environment
    from .models import model_config
    from .publishing.export import export_run
    from .publishing.hub import load, push
    from .publishing.space import build_space, push_space
    from .tokenizers import TokenizerConfig
    from .training import resume, train
    from .training.finetune import FinetuneConfig, finetune
    from .training.presets import PRESETS
