"""Recurrent language models: vanilla RNN, GRU and LSTM in one family.

    ids (B, T) -> embedding (B, T, E) -> `layers` stacked cells, dropout between (B, T, H) -> head -> (B, T, V)

Two heads:
- "linear": dropout -> Linear(H, V), the usual char-rnn model;
- "mlp": the many-to-one head of the classic exercise: dropout -> Linear(H, H) + ReLU -> dropout -> Linear(H, V).
The head runs at every position, so the same model serves the "every" and the "last" training targets
and generation carries the hidden state from one token to the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import TinyLMError, check_choices, check_types
from .base import LanguageModel, check_sizes

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


@dataclass
class RNNConfig:
    """Hyper-parameters of a recurrent language model."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"head": ("linear", "mlp")}

    vocab_size: int = 0
    """Number of token ids (set from the tokenizer)."""
    cell: str = "lstm"
    """rnn (tanh), gru or lstm."""
    embed: int = 64
    """Width of the token embedding."""
    hidden: int = 256
    """Width of each recurrent layer's hidden state."""
    layers: int = 2
    """Number of stacked recurrent layers."""
    dropout: float = 0.1
    """Dropout between layers and before the head."""
    head: str = "linear"
    """linear, or mlp (the exercise's dense + ReLU head)."""
    forget_bias: float | None = None
    """Initial bias of the LSTM's forget gates (Keras's unit_forget_bias sets 1; default: torch's uniform init)."""

    def __post_init__(self) -> None:
        check_types(self)
        check_sizes(self)
        if self.cell not in CELLS:
            raise TinyLMError(f"unknown recurrent cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        check_choices(self)
        if not 0.0 <= self.dropout < 1.0:
            raise TinyLMError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.forget_bias is not None and self.cell != "lstm":
            raise TinyLMError(f"--forget-bias is for an LSTM; a {self.cell} has no forget gate")


class RecurrentLM(LanguageModel):
    """Embedding -> stacked RNN/GRU/LSTM -> head; the state is the recurrent hidden state."""

    carries_state = True  # the hidden state carries the whole past: evaluation reads the text as streams
    sample_without_onednn = True  # measured: 1,179 vs 196 tokens/s for a 2x256 LSTM at batch 1, one thread

    family = "rnn"

    def tag(self) -> str:
        return self.config.cell

    def output_head(self) -> nn.Module:
        return self.head

    def __init__(self, config: RNNConfig):
        super().__init__(config)
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed)
        self.rnn = CELLS[c.cell](
            c.embed, c.hidden, num_layers=c.layers, batch_first=True, dropout=c.dropout if c.layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(c.dropout)
        if c.head == "mlp":
            self.head = nn.Sequential(
                nn.Linear(c.hidden, c.hidden), nn.ReLU(), nn.Dropout(c.dropout), nn.Linear(c.hidden, c.vocab_size)
            )
        else:
            self.head = nn.Linear(c.hidden, c.vocab_size)
        if c.forget_bias is not None:
            self._init_forget_bias(c.forget_bias)

    def _init_forget_bias(self, value: float) -> None:
        """Open the forget gates at the start, so the cell state (and its gradient) carries over many steps from the
        first update on. torch's LSTM adds two biases; its gates are ordered input, forget, cell, output."""
        h = self.config.hidden
        with torch.no_grad():
            for layer in range(self.config.layers):
                getattr(self.rnn, f"bias_ih_l{layer}")[h : 2 * h].fill_(value)
                getattr(self.rnn, f"bias_hh_l{layer}")[h : 2 * h].zero_()

    def describe(self) -> str:
        c = self.config
        return f"{c.cell} {c.layers}x{c.hidden} (embed {c.embed}, dropout {c.dropout:g}, head {c.head})"

    def forward(self, ids: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        x = self.embedding(ids)  # (B, T, E)
        out, state = self.rnn(x, state)  # (B, T, H); state: h (L, B, H), or (h, c) for LSTM
        return self.head(self.dropout(out)), state  # (B, T, V)


FAMILY = ("rnn", RNNConfig, RecurrentLM)
MODEL_NAMES = {"rnn": {"cell": "rnn"}, "gru": {"cell": "gru"}, "lstm": {"cell": "lstm"}}
