"""tinylm's cache folder, and what it measured on this machine.

The cache folder (`TINYLM_CACHE_DIR`, else `$XDG_CACHE_HOME/tinylm`, else `~/.cache/tinylm`) holds downloaded
corpora, runs rebuilt from the Hub, and the choices measured here. `cache_dir` is its one owner.

A measured choice (the training precision a probe step picked, the fastest generation precision) depends on the
machine (CPU, instruction set, torch, threads: tinylm.machine.devices.machine_key) and the model
(`model_fingerprint`). It is measured once and remembered in a JSON file of the cache folder, so the same command
makes the same choice every time (exact resumes and repeated runs need that): `MeasuredChoices.recall_or_measure`
is the one way to do it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch


def cache_dir() -> Path:
    """tinylm's cache folder (it may not exist yet)."""
    xdg_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(os.environ.get("TINYLM_CACHE_DIR") or xdg_cache / "tinylm")


def model_fingerprint(model: torch.nn.Module) -> str:
    """The model's class and a hash of its config: what a measured choice depends on of the model."""
    config = getattr(model, "config", None)
    shape = json.dumps(dataclasses.asdict(config) if dataclasses.is_dataclass(config) else repr(config),
                       sort_keys=True, default=str)
    return f"{type(model).__name__} {hashlib.sha256(shape.encode()).hexdigest()[:12]}"


class MeasuredChoices:
    """One JSON file of choices measured on this machine, in the cache folder: {key: entry}."""

    def __init__(self, name: str):
        self.name = name

    @property
    def path(self) -> Path:
        return cache_dir() / self.name

    def recall(self, key: str) -> dict | None:
        """The entry measured earlier for `key` (None: none, or the file is unreadable)."""
        entry = self._read().get(key)
        return entry if isinstance(entry, dict) else None

    def remember(self, key: str, entry: dict) -> None:
        """Store an entry (the file is rewritten whole, then renamed: never half a file; a read-only cache folder
        only means measuring again next time)."""
        data = self._read()
        data[key] = entry
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}")
            temporary.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(temporary, path)
        except OSError:
            pass

    def recall_or_measure(self, key: str, measure: Callable[[], dict],
                          usable: Callable[[dict], bool]) -> tuple[dict, bool]:
        """The entry for `key`: the remembered one where `usable(entry)`, else `measure()`'s, remembered.
        Returns (entry, whether it was remembered)."""
        entry = self.recall(key)
        if entry is not None and usable(entry):
            return entry, True
        entry = measure()
        self.remember(key, entry)
        return entry, False

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


TRAINING_CHOICES = MeasuredChoices("training_precision.json")
"""The training precision probe's choices (tinylm.machine.devices)."""
GENERATION_CHOICES = MeasuredChoices("generation_precision.json")
"""The generation precisions' measured ranking (tinylm.machine.fast_inference)."""
