"""Saving and loading weights and training state without pickle.

Weights, optimizer tensors and RNG states go to safetensors; everything else (step counters, optimizer
hyper-parameters, the training state) to JSON. Nothing on load can execute code from a file.

A resumable checkpoint is a folder written as a whole: files go to `checkpoint.tmp/`, which then
replaces `checkpoint/` by rename, so a crash at any moment leaves one complete checkpoint on disk.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import TinyLMError
from ..io import _fsync_dir, atomic_path, write_json
from ..weights import load_weights, save_weights

CHECKPOINT_DIR = "checkpoint"
CARRIED_FILE = "carried_state.safetensors"


def _optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    return tensors


def _restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    state: dict[str, Any], carried: Any = None) -> None:
    """Write weights, optimizer, RNG and training state as one unit (see module docstring); `carried` is the
    recurrent state of stateful training in the middle of an epoch (a tensor or a tuple of tensors)."""
    final = run_dir / CHECKPOINT_DIR
    tmp = run_dir / f"{CHECKPOINT_DIR}.tmp"
    old = run_dir / f"{CHECKPOINT_DIR}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(model, tmp / "model.safetensors")
    opt_tensors, opt_meta = _optimizer_to_files(optimizer) if optimizer else ({}, {"param_groups": []})
    with atomic_path(tmp / "optimizer.safetensors") as p:
        save_file(opt_tensors, str(p))
    write_json(tmp / "optimizer.json", opt_meta)
    with atomic_path(tmp / "rng.safetensors") as p:
        save_file(_rng_tensors(), str(p))
    if carried is not None:
        parts = {"tensor": carried} if isinstance(carried, torch.Tensor) else {
            f"tuple.{i}": t for i, t in enumerate(carried)}
        with atomic_path(tmp / CARRIED_FILE) as p:
            save_file({k: t.detach().cpu().contiguous() for k, t in parts.items()}, str(p))
    write_json(tmp / "state.json", state)
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(run_dir)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_path(run_dir: Path) -> Path | None:
    """The complete checkpoint folder of a run (after a crash between renames, the previous one)."""
    for name in (CHECKPOINT_DIR, f"{CHECKPOINT_DIR}.old"):
        folder = run_dir / name
        if (folder / "state.json").is_file():
            return folder
    return None


def read_state(run_dir: Path) -> dict[str, Any] | None:
    folder = checkpoint_path(run_dir)
    if folder is None:
        return None
    return json.loads((folder / "state.json").read_text(encoding="utf-8"))


def load_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    device: torch.device) -> dict[str, Any]:
    """Restore weights, optimizer and RNG; return the training state."""
    folder = checkpoint_path(run_dir)
    if folder is None:
        raise TinyLMError(f"{run_dir} has no checkpoint to resume from")
    load_weights(model, folder / "model.safetensors", device)
    try:
        opt_tensors = load_file(str(folder / "optimizer.safetensors"), device=str(device))
        opt_meta = json.loads((folder / "optimizer.json").read_text(encoding="utf-8"))
        if optimizer is not None:
            optimizer.load_state_dict(_optimizer_from_files(opt_tensors, opt_meta))
        _restore_rng(load_file(str(folder / "rng.safetensors")))
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        raise TinyLMError(f"the checkpoint in {folder} is damaged ({e})") from None
    return json.loads((folder / "state.json").read_text(encoding="utf-8"))


def read_carried(run_dir: Path, device: torch.device) -> Any:
    """The recurrent state saved by a stateful run stopped inside an epoch, or None."""
    folder = checkpoint_path(run_dir)
    if folder is None or not (folder / CARRIED_FILE).is_file():
        return None
    try:
        tensors = load_file(str(folder / CARRIED_FILE), device=str(device))
    except (SafetensorError, OSError) as e:
        raise TinyLMError(f"the checkpoint in {folder} is damaged ({e})") from None
    if "tensor" in tensors:
        return tensors["tensor"]
    return tuple(tensors[f"tuple.{i}"] for i in range(len(tensors)))
