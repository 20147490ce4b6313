"""Model weights <-> safetensors files. Loading never unpickles: a weights file holds only tensors."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_file, save_model

from ..errors import TinyLMError
from ..io import atomic_path


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP / torch.compile wrappers (their parameter names carry prefixes)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


@contextmanager
def os_errors_of_safetensors(path: str | Path) -> Iterator[None]:
    """Around a safetensors write: its error for what the filesystem refused (a full disk, no permission) is
    raised as that OSError, which the CLI words in one line (`... (os error 28)` is ENOSPC)."""
    try:
        yield
    except SafetensorError as e:
        code = re.search(r"os error (\d+)", str(e))
        if code is None:
            raise
        number = int(code.group(1))
        raise OSError(number, os.strerror(number), str(path)) from None


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    with atomic_path(path) as tmp, os_errors_of_safetensors(path):
        save_model(unwrap(model), str(tmp), metadata={"format": "pt"})


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """A dict of tensors as a safetensors file, written atomically."""
    with atomic_path(path) as tmp, os_errors_of_safetensors(path):
        save_file(tensors, str(tmp), metadata=metadata)


def load_weights(model: torch.nn.Module, path: str | Path, device: str | torch.device = "cpu") -> None:
    path = Path(path)
    if not path.is_file():
        raise TinyLMError(f"{path} not found")
    try:
        missing, unexpected = load_model(unwrap(model), str(path), strict=False, device=str(device))
    except (SafetensorError, OSError) as e:
        raise TinyLMError(
            f"{path} is not a readable safetensors file ({e}); it may be truncated or corrupted"
        ) from None
    except RuntimeError as e:  # shape mismatch
        first = str(e).strip().splitlines()[-1].strip()
        raise TinyLMError(f"{path} does not match the model in config.json: {first}") from None
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(sorted(missing)[:5])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(sorted(unexpected)[:5])}")
        raise TinyLMError(f"{path} does not match the model in config.json ({'; '.join(parts)})")
