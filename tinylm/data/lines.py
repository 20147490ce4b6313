"""Line mode: a corpus of independent short texts, one per line (titles, names, tweets...).

Each line becomes one sample `<eos> line <eos>`: the leading <eos> is the start context (so the first
token is predicted too), the trailing one teaches the model where a text ends, and generation stops
there. Lines are never joined; the train/validation split falls between lines. Batches are padded to
their longest line and the padding is left out of the loss (IGNORE targets).
"""

from __future__ import annotations

from typing import Iterator

import torch

from ..errors import TinyLMError
from .sources import validation_cut
from .windows import IGNORE


def split_lines(text: str, val_fraction: float) -> tuple[str, str]:
    """The last `val_fraction` of the characters validate, cut at the next line boundary."""
    cut = validation_cut(len(text), val_fraction)
    newline = text.find("\n", cut)
    cut = len(text) if newline < 0 else newline + 1
    return text[:cut], text[cut:]


def text_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def encode_lines(tokenizer, text: str, max_tokens: int) -> tuple[list[torch.Tensor], int]:
    """`<eos> line <eos>` id tensors, each at most `max_tokens` long; also how many lines were cut."""
    if tokenizer.eos_id is None:
        raise TinyLMError("line mode needs a tokenizer with an end-of-text token")
    lines = text_lines(text)
    encoded = tokenizer.backend.encode_batch(lines, add_special_tokens=False)
    sequences, truncated = [], 0
    for enc in encoded:
        ids = [tokenizer.eos_id, *enc.ids, tokenizer.eos_id]
        if len(ids) > max_tokens:
            truncated += 1
            ids = ids[:max_tokens]
        sequences.append(torch.tensor(ids, dtype=torch.long))
    return sequences, truncated


def pad_batch(sequences: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of shape (B, longest - 1): x right-padded with pad_id, y with IGNORE."""
    width = max(s.numel() for s in sequences) - 1
    x = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    y = torch.full((len(sequences), width), IGNORE, dtype=torch.long)
    for row, s in enumerate(sequences):
        x[row, : s.numel() - 1] = s[:-1]
        y[row, : s.numel() - 1] = s[1:]
    return x, y


class LineSamples:
    """Training samples of line mode, with the same interface as TokenWindows."""

    def __init__(self, sequences: list[torch.Tensor], pad_id: int):
        sequences = [s for s in sequences if s.numel() >= 2]
        if not sequences:
            raise TinyLMError("the training text has no non-empty lines")
        self.sequences = sequences
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.sequences)

    def num_batches(self, batch_size: int, world: int = 1) -> int:
        return -(-(len(self) // world) // batch_size)

    @property
    def num_tokens(self) -> int:
        return sum(s.numel() for s in self.sequences)

    @property
    def token_stream(self) -> torch.Tensor:
        """The lines one after another, <eos> between them (what a counting model fits on)."""
        return torch.cat(self.sequences)

    def epoch(self, batch_size: int, seed: int, skip: int = 0, rank: int = 0,
              world: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).tolist()
        order = order[: len(order) // world * world][rank::world]
        for i in range(skip * batch_size, len(order), batch_size):
            yield pad_batch([self.sequences[j] for j in order[i : i + batch_size]], self.pad_id)


def line_eval_batches(sequences: list[torch.Tensor], pad_id: int,
                      batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every line scored whole; lines of similar length share a batch to waste little padding."""
    ordered = sorted((s for s in sequences if s.numel() >= 2), key=lambda s: s.numel())
    for i in range(0, len(ordered), batch_size):
        yield pad_batch(ordered[i : i + batch_size], pad_id)
