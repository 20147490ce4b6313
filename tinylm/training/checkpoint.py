"""Saving and loading weights and training state without pickle.

Weights, optimizer tensors and RNG states go to safetensors; everything else (step counters, optimizer
hyper-parameters, the training state) to JSON. Nothing on load can execute code from a file.

A resumable checkpoint is a folder written as a whole (tinylm.folders.writing_folder): files go to a staging
folder beside `checkpoint/`, which then replaces it by rename, so a crash at any moment leaves one complete
checkpoint on disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import TinyLMError
from ..folders import writing_folder
from ..io import write_json
from ..models.weights import load_weights, save_tensors, save_weights
from ..run import migrations
from ..run.layout import CHECKPOINT as CHECKPOINT_DIR
from ..run.layout import WEIGHTS

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
    previous = checkpoint_path(run_dir)
    if previous is not None and previous != final:  # a kill between two renames left the last one aside
        os.replace(previous, final)
    # written beside checkpoint/ and renamed into place: a full disk or a kill leaves the last complete one
    with writing_folder(final) as staging:
        _write_checkpoint(staging, model, optimizer, state, carried)


def _write_checkpoint(tmp: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                      state: dict[str, Any], carried: Any) -> None:
    save_weights(model, tmp / WEIGHTS)
    opt_tensors, opt_meta = _optimizer_to_files(optimizer) if optimizer else ({}, {"param_groups": []})
    save_tensors(opt_tensors, tmp / "optimizer.safetensors")
    write_json(tmp / "optimizer.json", opt_meta)
    save_tensors(_rng_tensors(), tmp / "rng.safetensors")
    if carried is not None:
        parts = {"tensor": carried} if isinstance(carried, torch.Tensor) else {
            f"tuple.{i}": t for i, t in enumerate(carried)}
        save_tensors({k: t.detach().cpu().contiguous() for k, t in parts.items()}, tmp / CARRIED_FILE)
    write_json(tmp / "state.json", migrations.stamp(migrations.STATE_JSON, state))  # writing_folder fsyncs the folder


def checkpoint_path(run_dir: Path) -> Path | None:
    """The complete checkpoint folder of a run (after a crash between renames, the previous one)."""
    # checkpoint/, else the one a kill between two renames left aside (.checkpoint.*.old; checkpoint.old
    # before tinylm wrote every folder through tinylm.folders.writing_folder)
    for folder in [run_dir / CHECKPOINT_DIR, *sorted(run_dir.glob(f".{CHECKPOINT_DIR}.*.old")),
                   run_dir / f"{CHECKPOINT_DIR}.old"]:
        if (folder / "state.json").is_file():
            return folder
    return None


def read_state(run_dir: Path, schema: type | None = None) -> dict[str, Any] | None:
    """The training state of the run's checkpoint (None without one), checked against the dataclass `schema`:
    known fields of the right types, counters not negative."""
    folder = checkpoint_path(run_dir)
    if folder is None:
        return None
    path = folder / "state.json"
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:
        raise TinyLMError(f"{path} is damaged ({type(e).__name__}: {str(e)[:80]}); the checkpoint cannot be "
                          f"resumed") from None
    if not isinstance(state, dict):
        raise TinyLMError(f"{path} is damaged (not a JSON object); the checkpoint cannot be resumed")
    state = migrations.upgrade(migrations.STATE_JSON, state, path)  # from any earlier format
    state.pop(migrations.VERSION_KEY[migrations.STATE_JSON])
    if schema is not None:
        from ..config import check_fields

        check_fields(state, schema, str(path))
        negative = [k for k, v in state.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                    and k != "best_val_loss" and v < 0]
        if negative:
            raise TinyLMError(f"{path} is damaged ({negative[0]} is {state[negative[0]]})")
    return state


def _check_optimizer_shapes(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> None:
    """Every saved moment tensor must have its parameter's shape (load_state_dict would take any)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, values in state_dict["state"].items():
        if not 0 <= index < len(params):
            raise ValueError(f"state for parameter {index} of {len(params)}")
        for key, value in values.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != params[index].shape:
                raise ValueError(f"{key} of parameter {index} has shape {tuple(value.shape)}, the parameter "
                                 f"{tuple(params[index].shape)}")


def _check_rng(tensors: dict[str, torch.Tensor]) -> None:
    expected = torch.get_rng_state()
    got = tensors.get("torch_cpu")
    if got is None or got.dtype != expected.dtype or got.shape != expected.shape:
        raise ValueError("the CPU random generator state has the wrong size or type")


def load_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    device: torch.device) -> dict[str, Any]:
    """Restore weights, optimizer and RNG; return the training state. Every file is checked first (types,
    shapes, sizes): a damaged checkpoint is a TinyLMError, and nothing is half-restored from it."""
    folder = checkpoint_path(run_dir)
    if folder is None:
        raise TinyLMError(f"{run_dir} has no checkpoint to resume from")
    load_weights(model, folder / WEIGHTS, device)
    try:
        opt_tensors = load_file(str(folder / "optimizer.safetensors"), device=str(device))
        opt_meta = json.loads((folder / "optimizer.json").read_text(encoding="utf-8"))
        rng = load_file(str(folder / "rng.safetensors"))
        _check_rng(rng)
        if optimizer is not None:
            state_dict = _optimizer_from_files(opt_tensors, opt_meta)
            _check_optimizer_shapes(optimizer, state_dict)
            optimizer.load_state_dict(state_dict)
        _restore_rng(rng)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, IndexError, AttributeError,
            RuntimeError) as e:
        raise TinyLMError(f"the checkpoint in {folder} is damaged ({type(e).__name__}: {str(e)[:160]})") from None
    return read_state(run_dir)


def read_carried(run_dir: Path, device: torch.device) -> Any:
    """The recurrent state saved by a stateful run stopped inside an epoch, or None."""
    folder = checkpoint_path(run_dir)
    if folder is None or not (folder / CARRIED_FILE).is_file():
        return None
    try:
        tensors = load_file(str(folder / CARRIED_FILE), device=str(device))
        if "tensor" in tensors:
            return tensors["tensor"]
        return tuple(tensors[f"tuple.{i}"] for i in range(len(tensors)))
    except (SafetensorError, OSError, KeyError) as e:
        raise TinyLMError(f"the checkpoint in {folder} is damaged ({type(e).__name__}: {e})") from None
