"""Pretrained causal language models from Hugging Face transformers (GPT-2, Llama, ...) as a tinylm family.

    ids (B, T) -> AutoModelForCausalLM built from `hf_config` -> logits (B, T, V)
    state = (the KV cache, the ids it covers)

The run's tinylm config keeps the transformers model config as a JSON dict, so `tinylm.load` rebuilds the
architecture with `AutoConfig.for_model` (no remote code, no download) and loads model.safetensors into it.
The weights go by transformers' own names (`transformer.h.0...`, no `model.` prefix: see state_dict), so the
same model.safetensors is the one `AutoModelForCausalLM.from_pretrained(RUN)` reads. Files written before
(every name prefixed `model.`) still load. These runs come from `tinylm finetune`; `tinylm train` cannot
start one (MODEL_NAMES is empty).
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import TinyLMError, check_types
from .base import LanguageModel

# Keys of a transformers config dict that describe where or by which version it was written, not the model.
_VOLATILE_KEYS = ("transformers_version", "_name_or_path", "dtype", "torch_dtype")
_OLD_PREFIX = "model."  # fine-tunes written before weights went by transformers' names


def hf_config_dict(hf_config: Any) -> dict[str, Any]:
    """The JSON dict stored in HFCausalLMConfig.hf_config for a transformers PretrainedConfig."""
    return {k: v for k, v in hf_config.to_diff_dict().items() if k not in _VOLATILE_KEYS}


@dataclass
class HFCausalLMConfig:
    """A transformers causal LM: its config as transformers writes it, and the tokenizer's vocabulary size."""

    vocab_size: int = 0
    """Number of token ids of the tokenizer; logits past it (embeddings padded for speed) are dropped."""
    hf_config: dict[str, Any] = field(default_factory=dict)
    """The transformers model config (`config.to_diff_dict()`), with its `model_type`."""

    def __post_init__(self) -> None:
        check_types(self)
        if "model_type" not in self.hf_config:
            raise TinyLMError("the hf model config has no model_type; was it written by tinylm finetune?")
        if self.vocab_size < 1:
            raise TinyLMError(f"the hf model config needs a positive vocab_size, got {self.vocab_size}")


class HFCausalLM(LanguageModel):
    """A transformers AutoModelForCausalLM behind tinylm's `logits, state = model(ids, state)` contract."""

    family = "hf"
    wraps_transformers = True  # a fine-tune's run directory is a transformers model folder as well

    def tag(self) -> str:
        return self.config.hf_config.get("model_type") or self.family

    def __init__(self, config: HFCausalLMConfig, model: torch.nn.Module | None = None):
        """Build the architecture of `config` (random weights, to be loaded), or wrap an existing `model`."""
        super().__init__(config)
        if model is None:
            # transformers takes seconds to import: only runs of this family pay for it.
            try:
                from transformers import AutoConfig, AutoModelForCausalLM
            except ModuleNotFoundError:
                raise TinyLMError("this run is a transformers model: pip install 'tinylm[hf]'") from None

            values = dict(config.hf_config)
            try:
                hf_config = AutoConfig.for_model(values.pop("model_type"), **values)
            except (ValueError, KeyError) as e:
                raise TinyLMError(f"this transformers cannot build the model of config.json ({e})") from None
            # float32 whatever dtype the base was published in: tinylm trains and saves float32 weights.
            model = AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)
        self.model = model
        # transformers 5 renamed the KV cache argument (and output) `past_key_values` to `cache`.
        self._cache_name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        if model.config.vocab_size < config.vocab_size:
            raise TinyLMError(f"the tokenizer has {config.vocab_size} tokens but the model only "
                              f"{model.config.vocab_size} embeddings")
        # Absolute position embeddings (GPT-2) cannot go past this many tokens: see forward.
        self.context: int = getattr(model.config, "max_position_embeddings", None) or sys.maxsize

    # The weights under transformers' names: this wrapper adds nothing of its own, and model.safetensors is
    # then the file transformers loads (tied weights such as GPT-2's lm_head are stored once, as it does).
    def state_dict(self, *args, **kwargs):
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        own = self.model.state_dict().keys()
        # An earlier tinylm's file: every name prefixed, none of them ours (Llama's own names start "model.").
        if all(name.startswith(_OLD_PREFIX) and name not in own for name in state_dict):
            state_dict = {name[len(_OLD_PREFIX):]: tensor for name, tensor in state_dict.items()}
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)

    def describe(self) -> str:
        c = self.model.config
        return f"{c.model_type} {c.num_hidden_layers}x{c.hidden_size} (transformers, context {self.context})"

    def forward(self, ids: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """Logits for every position of `ids`, continuing the sequence held in `state`.

        The state is (KV cache, the ids it covers). When the cache is full (the model's context), it restarts
        from the last half of those ids, so generation runs past the context with at least half of it as
        history, at the cost of one re-read per half context (models/gpt.py slides the same way).
        """
        cache, seen = state if state is not None else (None, ids[:, :0])  # seen: (B, <= context)
        logits = []
        while ids.size(1):
            kept = ids[:, :0]  # ids to re-read when the cache restarts
            if seen.size(1) == self.context:
                kept, cache, seen = seen[:, seen.size(1) - self.context // 2:], None, ids[:, :0]
            room = self.context - kept.size(1) - seen.size(1)
            x = torch.cat([kept, ids[:, :room]], dim=1)  # (B, n): the cache covers seen + n <= context ids
            out = self.model(input_ids=x, use_cache=True, **{self._cache_name: cache})
            logits.append(out.logits[:, kept.size(1):, : self.config.vocab_size])  # (B, n - kept, V)
            cache, seen, ids = getattr(out, self._cache_name), torch.cat([seen, x], dim=1), ids[:, room:]
        return torch.cat(logits, dim=1), (cache, seen)


FAMILY = ("hf", HFCausalLMConfig, HFCausalLM)
MODEL_NAMES: dict[str, dict[str, Any]] = {}  # made by `tinylm finetune` only, not by `tinylm train --model`
