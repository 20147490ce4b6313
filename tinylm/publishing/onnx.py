"""A GPT run -> an ONNX decoder with a KV cache, for ONNX Runtime and onnxruntime-genai (`--format onnx`).

    tinylm export runs/gpt exports/gpt-onnx --format onnx
    ids = generate_onnx("exports/gpt-onnx", prompt_ids, max_new_tokens=50, threads=1)

The graph has the decoder layout of optimum and transformers.js: inputs input_ids (batch, seq),
attention_mask (batch, past + seq), position_ids (batch, seq) and past_key_values.{i}.key / .value (batch,
heads, past, head size) per layer; outputs logits (batch, seq, vocab) and present.{i}.key / .value, the cache
with the new positions appended. The first call passes a past of length 0. `_CachedDecoder` computes it with
the GPT's own modules (embeddings, LayerNorms, projections, MLPs, head), so the weights are the run's, as
they are; only attention is written out here, because the GPT's own takes its cache as a Python object.

The graph is traced by torch.onnx's TorchScript exporter (dynamo=False): the dynamo exporter needs
onnxscript, which the onnx extra does not install, and the tracer gives a graph whose batch, seq and past axes
are all dynamic, checked against the GPT by tests/test_export_onnx.py.

Context: positions are learned for 0..block_size-1 only, and this graph does not slide the context as
tinylm's own generation does (models/gpt.py). A position id of block_size or more fails in ONNX Runtime
(Gather out of bounds) instead of giving wrong logits; generate_onnx refuses a request that would need one,
and genai_config.json's context_length and max_length are block_size, so onnxruntime-genai stops there.
"""

from __future__ import annotations

import copy
import json
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import TinyLMError
from ..io import write_json
from ..loading import LoadedModel
from ..models.gpt import GPT
from .export import check_gpt2_shaped, generation_config, gpt2_config

OPSET = 17  # LayerNormalization is a single op from opset 17 on
EXTERNAL_DATA_BYTES = 1_800_000_000  # weights beyond this go to model.onnx.data: a protobuf file stops at 2 GB


def past_names(layers: int) -> list[str]:
    """The cache inputs, key then value per layer (optimum's names)."""
    return [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]


def present_names(layers: int) -> list[str]:
    """The cache outputs, in the order of past_names."""
    return [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]


class _CachedDecoder(nn.Module):
    """tinylm's GPT in the decoder layout above: the GPT's modules, with attention over past + new keys.

    The causal rule is by index, as in transformers' GPT-2: the query at index past + i sees keys 0..past + i,
    less those whose attention_mask is 0 (left padding in a batch). Positions come from position_ids."""

    def __init__(self, model: GPT):
        super().__init__()
        self.gpt = model
        self.heads = model.config.heads

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        transformer = self.gpt.transformer
        x = transformer.wte(input_ids) + transformer.wpe(position_ids)  # (B, T, E)
        bias = _attention_bias(attention_mask, input_ids.shape[1])
        present = []
        for layer, block in enumerate(transformer.h):
            y, keys, values = self._attend(block.attn, block.ln_1(x), past[2 * layer], past[2 * layer + 1], bias)
            x = x + y
            x = x + block.mlp(block.ln_2(x))
            present += [keys, values]
        # The head (tied to wte, no bias) as W @ x^T: lm_head(x) = x @ W^T would have the exporter fold W^T into
        # a second copy of the embedding matrix in the file.
        logits = (self.gpt.lm_head.weight @ transformer.ln_f(x).transpose(1, 2)).transpose(1, 2)
        return (logits, *present)

    def _attend(self, attn: nn.Module, x: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor,
                bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Multi-head attention of x (B, T, E) over the cache and itself (CausalSelfAttention's weights and
        head split); return its output (B, T, E) and the grown keys and values (B, nh, past + T, hs)."""
        B, T, C = x.shape
        hs = C // self.heads
        q, k, v = attn.c_attn(x).view(B, T, 3, self.heads, hs).permute(2, 0, 3, 1, 4).unbind(0)
        keys, values = torch.cat([past_keys, k], dim=2), torch.cat([past_values, v], dim=2)
        scores = (q @ keys.transpose(-1, -2)) * hs**-0.5 + bias  # (B, nh, T, past + T)
        y = scores.softmax(dim=-1) @ values
        return attn.c_proj(y.transpose(1, 2).reshape(B, T, C)), keys, values


def _attention_bias(attention_mask: torch.Tensor, seq: int) -> torch.Tensor:
    """(B, 1, T, past + T): 0 where a query may look, the lowest float elsewhere. Finite, so that a row with
    nothing to see (a padding query) gives an even softmax instead of NaN."""
    total = attention_mask.shape[1]
    keys = torch.arange(total, device=attention_mask.device)
    queries = torch.arange(seq, device=attention_mask.device) + (total - seq)
    allowed = (keys[None, :] <= queries[:, None])[None, None] & (attention_mask[:, None, None, :] > 0)
    zero = torch.zeros((), dtype=torch.float32)
    return torch.where(allowed, zero, torch.finfo(torch.float32).min)


# -- export -----------------------------------------------------------------------------------------------
def export_onnx(run: LoadedModel, out: Path) -> None:
    """Write `run` (a GPT built like GPT-2) into the empty folder `out`: model.onnx (weights inside, or in
    model.onnx.data past 1.8 GB), genai_config.json for onnxruntime-genai, a GPT-2 config.json and
    generation_config.json (for optimum and transformers.js), and the tokenizer files."""
    model = check_gpt2_shaped(run, "onnx")
    config = gpt2_config(model, run.tokenizer)
    write_graph(model, out / "model.onnx")
    write_json(out / "config.json", config)
    write_json(out / "generation_config.json", generation_config(model, config))
    write_json(out / "genai_config.json", genai_config(model, config))
    run.tokenizer.save(out)


def write_graph(model: GPT, path: Path) -> None:
    """Trace `model` (a CPU float32 copy of it, in eval mode) into the ONNX file `path`, with dynamic batch,
    seq and past axes. The example has every axis above 1 and a non-empty past, so the tracer bakes in no size."""
    import onnx

    model = copy.deepcopy(model).to("cpu", torch.float32).eval()
    c = model.config
    names = ["input_ids", "attention_mask", "position_ids", *past_names(c.layers)]
    outputs = ["logits", *present_names(c.layers)]
    batch, seq, past = 2, 3, 4
    example = (torch.zeros(batch, seq, dtype=torch.long), torch.ones(batch, past + seq, dtype=torch.long),
               torch.arange(past, past + seq).repeat(batch, 1),
               *[torch.zeros(batch, c.heads, past, c.embed // c.heads)] * (2 * c.layers))
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "past_seq"},
            "position_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
    axes |= {name: {0: "batch", 2: "past"} for name in past_names(c.layers)}
    axes |= {name: {0: "batch", 2: "past_seq"} for name in present_names(c.layers)}
    with tempfile.TemporaryDirectory() as scratch, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's and the exporter's deprecation notes are not the user's
        traced = Path(scratch) / "model.onnx"
        torch.onnx.export(_CachedDecoder(model), example, str(traced), dynamo=False, opset_version=OPSET,
                          input_names=names, output_names=outputs, dynamic_axes=axes, do_constant_folding=True)
        graph = onnx.load(str(traced))  # with any weights the exporter put beside it
    large = sum(p.numel() * 4 for p in model.parameters()) > EXTERNAL_DATA_BYTES
    onnx.save(graph, str(path), save_as_external_data=large, all_tensors_to_one_file=True,
              location=f"{path.name}.data")


def genai_config(model: GPT, config: dict) -> dict:
    """genai_config.json: how onnxruntime-genai feeds the graph (its input and output names, the cache's
    shape) and its search defaults: greedy, up to the whole context (block_size tokens, prompt included)."""
    c = model.config
    return {
        "model": {
            "type": "decoder",  # og's generic decoder: separate keys and values ("gpt2" wants past_{i} combined)
            "vocab_size": c.vocab_size,
            "context_length": c.block_size,
            "bos_token_id": config["bos_token_id"],
            "eos_token_id": config["eos_token_id"],
            "pad_token_id": config["pad_token_id"] if config["pad_token_id"] is not None else config["eos_token_id"],
            "decoder": {
                "filename": "model.onnx",
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "hidden_size": c.embed,
                "head_size": c.embed // c.heads,
                "num_attention_heads": c.heads,
                "num_key_value_heads": c.heads,
                "num_hidden_layers": c.layers,
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           "position_ids": "position_ids", "past_key_names": "past_key_values.%d.key",
                           "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
            },
        },
        "search": {
            "do_sample": False, "max_length": c.block_size, "min_length": 0, "num_beams": 1,
            "num_return_sequences": 1, "past_present_share_buffer": False, "repetition_penalty": 1.0,
            "temperature": 1.0, "top_k": 50, "top_p": 1.0, "early_stopping": True, "length_penalty": 1.0,
            "no_repeat_ngram_size": 0, "diversity_penalty": 0.0,
        },
    }


# -- generation ---------------------------------------------------------------------------------------------
class OnnxGenerator:
    """An exported folder run by onnxruntime.InferenceSession with its KV cache, batch 1: `step` for logits,
    `generate` for greedy ids. The caller owns sampling: `step` gives the logits to sample from."""

    def __init__(self, folder: str | Path, threads: int | None = None):
        """`threads`: ONNX Runtime's intra-op threads (None: its default, one per core)."""
        import onnxruntime as ort

        folder = Path(folder)
        if not (folder / "model.onnx").is_file() or not (folder / "config.json").is_file():
            raise TinyLMError(f"{folder} is not an ONNX export (model.onnx and config.json): write one with "
                              f"`tinylm export RUN {folder} --format onnx`")
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.block_size, self.layers = config["n_positions"], config["n_layer"]
        self.heads, self.head_size = config["n_head"], config["n_embd"] // config["n_head"]
        self.eos_id = config.get("eos_token_id")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])

    def empty_cache(self) -> list[np.ndarray]:
        """The past of a new sequence: every key and value with 0 positions."""
        return [np.zeros((1, self.heads, 0, self.head_size), np.float32)] * (2 * self.layers)

    def step(self, ids: list[int], cache: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Run `ids` after the positions in `cache`; return their logits (len(ids), vocab) and the grown cache."""
        past = cache[0].shape[2]
        if past + len(ids) > self.block_size:
            raise TinyLMError(f"positions {past}..{past + len(ids) - 1} are past the model's context of "
                              f"{self.block_size} tokens (the ONNX graph does not slide it)")
        feed = {"input_ids": np.array([ids], np.int64),
                "attention_mask": np.ones((1, past + len(ids)), np.int64),
                "position_ids": np.arange(past, past + len(ids), dtype=np.int64)[None]}
        feed |= dict(zip(past_names(self.layers), cache))
        logits, *present = self.session.run(None, feed)
        return logits[0], present

    def stream(self, prompt_ids: list[int], max_new_tokens: int, stop_at_eos: bool = True) -> Iterator[int]:
        """Yield greedy new ids one at a time (<eos> ends the text and is not yielded, when `stop_at_eos`).
        The prompt and the new tokens must fit in block_size: a longer request is a TinyLMError."""
        if not prompt_ids:
            raise TinyLMError("generation needs at least one prompt token")
        room = self.block_size - len(prompt_ids)
        if max_new_tokens > room:
            fix = f"ask for at most {room} new tokens" if room > 0 else "shorten the prompt"
            raise TinyLMError(f"{len(prompt_ids)} prompt tokens + {max_new_tokens} new ones exceed the model's "
                              f"context of {self.block_size} tokens (the ONNX graph does not slide it): {fix}")
        logits, cache = self.step(list(prompt_ids), self.empty_cache())
        for _ in range(max_new_tokens):
            token = int(logits[-1].argmax())
            if stop_at_eos and token == self.eos_id:
                return
            yield token
            logits, cache = self.step([token], cache)

    def generate(self, prompt_ids: list[int], max_new_tokens: int, stop_at_eos: bool = True) -> list[int]:
        """The greedy new ids after `prompt_ids` (see stream)."""
        return list(self.stream(prompt_ids, max_new_tokens, stop_at_eos))


def generate_onnx(folder: str | Path, prompt_ids: list[int], max_new_tokens: int, threads: int | None = None,
                  stop_at_eos: bool = True) -> list[int]:
    """The greedy new ids after `prompt_ids` from the ONNX export in `folder`, on `threads` intra-op threads.
    For timing, build an OnnxGenerator once (opening the session costs more than a short generation)."""
    return OnnxGenerator(folder, threads).generate(prompt_ids, max_new_tokens, stop_at_eos)
