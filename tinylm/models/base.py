"""The contract every model family implements, so training, sampling, evaluation and export never
branch on the model type.

    logits, state = model(ids, state)     # ids (B, T) int64 -> logits (B, T, V) float

`state` is whatever the family needs to continue a sequence: the recurrent hidden state, a KV cache,
or the last n-1 tokens of an n-gram model. `None` starts a new sequence. Generation feeds the prompt
once, then one token per step with the returned state.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import TinyLMError

# Limits of a model's sizes, far above any model this toolkit trains (its presets are under 50M parameters; GPT-2
# XL has 48 layers, width 1600, 1024 positions) and far below what would hang the machine or ask for terabytes.
# Model configs check them when made (check_sizes), config.json before anything is built (tinylm.config).
SIZE_LIMITS = {"layers": 256, "heads": 1024, "embed": 65_536, "hidden": 65_536, "block_size": 1 << 20,
               "vocab_size": 4_000_000, "order": 64}


def check_sizes(config: Any) -> None:
    """Refuse a size field of a model config below 1 (vocab_size: below 0, which means "set from the tokenizer")
    or above SIZE_LIMITS; call after tinylm.errors.check_types, so the values are whole numbers."""
    for name, limit in SIZE_LIMITS.items():
        value = getattr(config, name, None)
        if value is None:
            continue
        flag = name if name == "vocab_size" else f"--{name.replace('_', '-')}"
        if name == "vocab_size" and value < 0:
            raise TinyLMError(f"vocab_size must be a number of tokens (0: set from the tokenizer), got {value}")
        if name != "vocab_size" and value < 1:
            raise TinyLMError(f"{flag} must be at least 1, got {value}")
        if value > limit:
            raise TinyLMError(f"{flag} is {value:,}: more than tinylm's limit of {limit:,}")


class LanguageModel(nn.Module):
    """Base class: holds the family's config and counts parameters."""

    family: ClassVar[str]
    trainable: ClassVar[bool] = True  # False for CountingModel: fitted by counting, not by gradient steps
    sample_without_onednn: ClassVar[bool] = False  # True where CPU sampling at batch 1 is faster without oneDNN
    carries_state: ClassVar[bool] = False  # True where the state summarises the whole past (evaluated as streams)
    exports_to_transformers: ClassVar[bool] = False  # True where tinylm.publishing.export writes it for transformers
    wraps_transformers: ClassVar[bool] = False  # True where it is a transformers model (its run is such a folder)

    def __init__(self, config: Any):
        super().__init__()
        self.config = config

    def forward(self, ids: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> str:
        """A short human description, e.g. 'lstm 2x256 (embed 64, ...)'; families override it."""
        return self.family

    def tag(self) -> str:
        """The model's kind in one word, for names and model cards: the family, or a finer name (lstm, gpt2)."""
        return self.family

    def output_head(self) -> nn.Module | None:
        """The module that turns the last hidden vectors into logits (None: the family has none)."""
        return None

    def hidden_matrices(self) -> list[nn.Parameter]:
        """The 2-D weights of the hidden layers (what Muon updates): every 2-D weight but the embeddings (and a
        head tied to one) and the output head."""
        outside = {id(p) for module in self.modules() if isinstance(module, nn.Embedding)
                   for p in module.parameters(recurse=False)}
        head = self.output_head()
        if head is not None:
            outside.update(id(p) for p in head.parameters())
        return [p for p in self.parameters() if p.dim() == 2 and id(p) not in outside]

    def num_parameters(self) -> int:
        """Trainable parameters, each shared (tied) tensor counted once."""
        seen: set[int] = set()
        total = 0
        for p in self.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
        return total


class CountingModel(LanguageModel):
    """A model that learns by counting in one pass over the training ids (no gradients, no optimizer),
    e.g. an n-gram model. The training loop calls `fit` once, then evaluates and saves it like any model."""

    trainable: ClassVar[bool] = False

    def fit(self, ids: torch.Tensor) -> None:  # pragma: no cover
        raise NotImplementedError
