"""A run directory -> another library's format.

    tinylm.export_run("runs/gpt", "exports/gpt", format="transformers")

`transformers`: a GPT run becomes a GPT2LMHeadModel folder (config.json, model.safetensors and the
tokenizer files) that `AutoModelForCausalLM.from_pretrained(folder)` loads without trust_remote_code and
`pipeline("text-generation", model=folder)` runs. tinylm's GPT is built like GPT-2 (same module names,
learned positions, LayerNorm eps 1e-5, tanh GELU, biases, tied head), so the conversion is exact: the only
change is that GPT-2's Conv1D stores each projection as (in, out), the transpose of nn.Linear's (out, in).
The way back is as exact (`state_dict_from_gpt2`): a pushed GPT repo keeps its weights once, GPT-2's at the
root, and `tinylm.load` rebuilds tinylm's from them (tinylm.publishing.hub). Nothing here imports transformers.

The exported model has GPT-2's context rule: at most block_size positions in all (prompt + new tokens).
tinylm's own generation slides past it (see models/gpt.py); transformers' does not: its generate() fails with
an IndexError past block_size, so callers keep len(prompt) + max_new_tokens <= block_size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import TinyLMError
from ..folders import OutputKind
from ..io import as_path, write_json
from ..loading import LoadedModel, load_run
from ..models.gpt import GPT
from ..models.weights import save_tensors

# Per block: GPT-2 parameter name -> whether it is a Conv1D weight (stored transposed).
_BLOCK_PARAMETERS = {
    "ln_1.weight": False, "ln_1.bias": False,
    "attn.c_attn.weight": True, "attn.c_attn.bias": False,
    "attn.c_proj.weight": True, "attn.c_proj.bias": False,
    "ln_2.weight": False, "ln_2.bias": False,
    "mlp.c_fc.weight": True, "mlp.c_fc.bias": False,
    "mlp.c_proj.weight": True, "mlp.c_proj.bias": False,
}


def _gpt2_layout(model: GPT) -> dict[str, tuple[tuple[int, ...], bool]]:
    """GPT2LMHeadModel's parameters for `model`: name -> (shape, whether it is a Conv1D weight). tinylm's GPT
    uses the same names; lm_head.weight is not one of them (tied to transformer.wte.weight)."""
    c = model.config
    d, V, P = c.embed, c.vocab_size, c.block_size
    shapes = {  # GPT-2's layout (d = width, V = vocabulary, P = positions)
        "ln_1.weight": (d,), "ln_1.bias": (d,),
        "attn.c_attn.weight": (d, 3 * d), "attn.c_attn.bias": (3 * d,),
        "attn.c_proj.weight": (d, d), "attn.c_proj.bias": (d,),
        "ln_2.weight": (d,), "ln_2.bias": (d,),
        "mlp.c_fc.weight": (d, 4 * d), "mlp.c_fc.bias": (4 * d,),
        "mlp.c_proj.weight": (4 * d, d), "mlp.c_proj.bias": (d,),
    }
    table = {"transformer.wte.weight": ((V, d), False), "transformer.wpe.weight": ((P, d), False)}
    for i in range(c.layers):
        for name, conv1d in _BLOCK_PARAMETERS.items():
            table[f"transformer.h.{i}.{name}"] = (shapes[name], conv1d)
    table.update({"transformer.ln_f.weight": ((d,), False), "transformer.ln_f.bias": ((d,), False)})
    return table


def gpt2_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The weights of `model` under GPT2LMHeadModel's names and shapes (float32, CPU). lm_head.weight is
    left out: it is tied to transformer.wte.weight, which transformers ties back on loading."""
    table = _gpt2_layout(model)
    ours = model.state_dict()
    left = set(ours) - set(table) - {"lm_head.weight"}
    assert not left, f"GPT parameters without a GPT-2 name: {sorted(left)}"
    converted = {}
    for name, (shape, conv1d) in table.items():
        tensor = ours[name].t() if conv1d else ours[name]  # nn.Linear (out, in) -> Conv1D (in, out)
        assert tuple(tensor.shape) == shape, f"{name}: {tuple(tensor.shape)} != GPT-2's {shape}"
        converted[name] = tensor.detach().to("cpu", torch.float32).contiguous()
    return converted


def state_dict_from_gpt2(weights: dict[str, torch.Tensor], model: GPT,
                         source: str = "model.safetensors") -> dict[str, torch.Tensor]:
    """The inverse of gpt2_state_dict: GPT2LMHeadModel's `weights` (read from the file `source`) as the state
    dict of `model` (its names, shapes and dtypes), for `model.load_state_dict(..., strict=True)`. Conv1D
    weights are transposed back to nn.Linear's (out, in); lm_head.weight is the token embedding (tied). A
    file that does not fit `model` is a TinyLMError."""
    table = _gpt2_layout(model)
    missing = sorted(set(table) - set(weights))
    unexpected = sorted(set(weights) - set(table) - {"lm_head.weight"})  # some writers store the tied head
    if missing or unexpected:
        found = [f"missing {', '.join(missing[:5])}"] if missing else []
        found += [f"unexpected {', '.join(unexpected[:5])}"] if unexpected else []
        raise TinyLMError(f"{source} does not hold the GPT-2 weights of this run's model ({'; '.join(found)})")
    ours = model.state_dict()
    converted = {}
    for name, (shape, conv1d) in table.items():
        tensor = weights[name]
        if tuple(tensor.shape) != shape:
            raise TinyLMError(f"{source} does not hold the GPT-2 weights of this run's model: {name} is "
                              f"{tuple(tensor.shape)}, the model needs {shape}")
        tensor = tensor.t() if conv1d else tensor  # Conv1D (in, out) -> nn.Linear (out, in)
        converted[name] = tensor.to(ours[name].dtype).contiguous()
    converted["lm_head.weight"] = converted["transformer.wte.weight"]
    return converted


def gpt_from_gpt2_file(path: Path, model: GPT) -> GPT:
    """Load the GPT2LMHeadModel safetensors file `path` (an export's or a GPT repo's model.safetensors) into
    `model`, a GPT built from the run's config; return it. Reads tensors only (safetensors)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise TinyLMError(f"{path} is not a readable safetensors file ({e}); it may be truncated or "
                          f"corrupted") from None
    model.load_state_dict(state_dict_from_gpt2(weights, model, str(path)), strict=True)
    return model


def check_gpt2_shaped(run: LoadedModel, format: str) -> GPT:
    """`run`'s model if every export format can write it (a GPT built like GPT-2), else a one-line TinyLMError
    that names the families the format takes. Every format writes GPT-2's graph: transformers' GPT2LMHeadModel,
    llama.cpp's `gpt2` architecture, the ONNX decoder."""
    if not isinstance(run.module, GPT):
        raise TinyLMError(f"--format {format} exports GPT runs only (family gpt; markov, rnn, gru and lstm runs "
                          f"have no {format} form); {run.run_dir} holds a {run.module.describe()} model")
    if options := run.module.config.gpt2_incompatibilities():
        raise TinyLMError(f"--format {format} needs a GPT-2-compatible GPT; {run.run_dir} uses "
                          f"{', '.join(options)}, which GPT-2's layout cannot represent")
    return run.module


def gpt2_config(model: GPT, tokenizer) -> dict:
    """config.json of a GPT2LMHeadModel with the same architecture (readable by transformers 4 and 5)."""
    c = model.config
    eos = tokenizer.eos_id
    bos = tokenizer.backend.token_to_id(tokenizer.bos_token) if tokenizer.bos_token else eos
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.block_size,
        "n_embd": c.embed,
        "n_layer": c.layers,
        "n_head": c.heads,
        "n_inner": None,  # 4 * n_embd
        "activation_function": "gelu_new",  # F.gelu(approximate="tanh")
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": tokenizer.pad_id,
    }


TRANSFORMERS_ENTRIES = {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                        "tokenizer_config.json", "special_tokens_map.json"}


def export_transformers(run: LoadedModel, out: Path) -> None:
    """Write `run` (a GPT run) as a transformers GPT2LMHeadModel folder."""
    check_gpt2_shaped(run, "transformers")
    config = gpt2_config(run.module, run.tokenizer)
    # transformers 4 refuses safetensors files without metadata format "pt"
    save_tensors(gpt2_state_dict(run.module), out / "model.safetensors", metadata={"format": "pt"})
    write_json(out / "config.json", config)
    # The default length is max_new_tokens, half the context (room for a prompt as long), not max_length:
    # with max_length in this file, transformers warns on every call that passes max_new_tokens. Past
    # block_size, prompt included, GPT2LMHeadModel fails (IndexError): see docs/tracking-and-hub.md.
    write_json(out / "generation_config.json", generation_config(run.module, config))
    run.tokenizer.save(out)


def generation_config(model: GPT, config: dict) -> dict:
    """generation_config.json beside a GPT-2 config.json (the transformers and ONNX exports): the special ids, and
    half the context as the default length."""
    return {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"],
            "pad_token_id": config["pad_token_id"], "max_new_tokens": max(1, model.config.block_size // 2)}


@dataclass(frozen=True)
class ExportFormat:
    """One target format of `tinylm export`: the function that writes a run into a staging folder (with the
    options it takes) and the files it writes, by which an earlier export of this format is recognised."""

    write: Callable[..., None]
    entries: frozenset[str]
    marker: str
    """The file that shows a folder holds an export of this format."""
    about: str
    """What OUT holds, for --help and the last line of `tinylm export`."""
    options: tuple[str, ...] = ()


def _lazy(module: str, function: str) -> Callable[..., None]:
    """A writer imported only when used: the gguf and onnx packages are optional extras."""

    def write(run: LoadedModel, out: Path, **options) -> None:
        import importlib

        getattr(importlib.import_module(module, __package__), function)(run, out, **options)

    return write


EXPORT_FORMATS: dict[str, ExportFormat] = {
    "transformers": ExportFormat(export_transformers, frozenset(TRANSFORMERS_ENTRIES), "model.safetensors",
                                 "a GPT2LMHeadModel folder: transformers.AutoModelForCausalLM.from_pretrained(OUT)"),
    "gguf": ExportFormat(_lazy(".gguf", "export_gguf"), frozenset({"model.gguf", "README.md"}), "model.gguf",
                         "OUT/model.gguf for llama.cpp, Ollama and LM Studio (llama-cli -m OUT/model.gguf)",
                         options=("outtype",)),
    "onnx": ExportFormat(_lazy(".onnx", "export_onnx"), frozenset({
        "model.onnx", "model.onnx.data", "genai_config.json", "config.json", "generation_config.json",
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}), "model.onnx",
        "OUT/model.onnx with a KV cache for ONNX Runtime (onnxruntime-genai: og.Model(OUT))"),
}


def _is_export(folder: Path) -> bool:
    """Whether `folder` holds an earlier export (of any format) and is not a tinylm run. Files no format writes
    are found by the folder check (EXPORT_FOLDER.allowed), which names them."""
    from ..run.layout import is_run

    return any((folder / f.marker).is_file() for f in EXPORT_FORMATS.values()) and not is_run(folder)


EXPORT_FOLDER = OutputKind("an export", _is_export, frozenset().union(*(f.entries for f in EXPORT_FORMATS.values())))
"""An export as an output folder (tinylm.folders); its messages name the format."""


def export_run(run_dir: str | Path, out: str | Path, format: str = "transformers", *,
               overwrite: bool = False, **options) -> Path:
    """Write the run in the folder `run_dir` to the folder `out` in `format`; return `out` (`tinylm export` finds
    the folder of a pushed run or a Hub id first: tinylm.publishing.hub.locate_run).

    `out` must be absent or empty, or (with `overwrite`) an earlier export, which is replaced whole; a run or a
    folder holding other files never is. The folder is written beside `out` and renamed into place, so a kill
    leaves the old folder or the new one, never half of one. `options` are the format's own (gguf: outtype)."""
    from ..folders import check_apart, writing_output

    if format not in EXPORT_FORMATS:
        raise TinyLMError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    options = {name: value for name, value in options.items() if value is not None}
    if extra := sorted(set(options) - set(EXPORT_FORMATS[format].options)):
        owners = " / ".join(name for name, f in EXPORT_FORMATS.items() if extra[0] in f.options)
        raise TinyLMError(f"--{extra[0]} applies to --format {owners} only, not {format}")
    run_dir, out = as_path(run_dir, "run_dir"), as_path(out, "out")
    check_apart(out, run_dir, "OUT", "the run")
    kind = dataclasses.replace(EXPORT_FOLDER, what=f"a {format} export")
    kind.check(out, overwrite, flag="OUT")  # before the run is loaded
    run = load_run(run_dir)
    with writing_output(kind, out, overwrite=overwrite, flag="OUT") as staging:
        EXPORT_FORMATS[format].write(run, staging, **options)
    return out
