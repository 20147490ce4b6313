"""The modules' earlier import paths, for one release: `import tinylm.hub` (or `from tinylm.lightning import fit`)
gets the module that now lives in its wing, the same module object, so monkeypatching or importing through an
old path reaches the real one. tinylm.rundir, which became three modules, is a module that forwards each name to
its new home. New code imports the new paths; these go in the next release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

MOVED = {
    "tinylm.runs": "tinylm.loading", "tinylm.migrations": "tinylm.run.migrations",
    "tinylm.devices": "tinylm.machine.devices", "tinylm.inference": "tinylm.machine.fast_inference",
    "tinylm.environment": "tinylm.machine.report", "tinylm.hub": "tinylm.publishing.hub",
    "tinylm.export": "tinylm.publishing.export", "tinylm.temperature": "tinylm.lab.temperature",
    "tinylm.app": "tinylm.lab.playground", "tinylm.memorisation": "tinylm.evaluation.memorisation",
    "tinylm.compare": "tinylm.lab.compare", "tinylm.encoding": "tinylm.tokenizers.encoding",
    "tinylm.tracking": "tinylm.run.loggers", "tinylm.finetune": "tinylm.training.finetune",
    "tinylm.lightning": "tinylm.training.lightning", "tinylm.presets": "tinylm.training.presets",
    "tinylm.weights": "tinylm.models.weights",
}
"""Old module path -> its module now. (tinylm.generation and tinylm.evaluation are packages now: their modules'
names are re-exported by the packages' own attributes only through these paths' new homes.)"""
SPLIT = {"tinylm.rundir": ("tinylm.folders", "tinylm.run.layout", "tinylm.run.session")}
"""Old module path -> the modules its names went to."""


class _Forward(types.ModuleType):
    """An old module that became several: each name is looked up in its new homes, in order."""

    def __init__(self, name: str, homes: tuple[str, ...]):
        super().__init__(name, f"Moved: see {', '.join(homes)}.")
        self._homes = homes

    def __getattr__(self, attr: str):
        for home in self._homes:
            module = importlib.import_module(home)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        if spec.name in SPLIT:
            return _Forward(spec.name, SPLIT[spec.name])
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module) -> None:
        pass  # the module is the new one, already imported


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname in MOVED or fullname in SPLIT:
            return importlib.util.spec_from_loader(fullname, _Loader())
        return None


if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _Finder())
