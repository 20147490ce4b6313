"""Text -> the examples a model trains and is evaluated on, for either data shape:
token windows over one stream (windows.py) or independent lines (lines.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from .lines import LineSamples, encode_lines, line_eval_batches
from .windows import TokenWindows, eval_batches

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class EvalSet:
    """A text ready to score: `batches(batch_size)` yields (x, y) scoring each token once."""

    batches: Callable[[int], Batches]
    tokens: int
    """Tokens of the encoded text (scored or not)."""
    chars: int
    """Characters of the text."""
    truncated: int = 0
    """Lines cut to the block size (line mode)."""


def _pad_id(tokenizer) -> int:
    # Padding only fills positions after a line's end, so any id works when the tokenizer has no <pad>.
    return tokenizer.pad_id if tokenizer.pad_id is not None else (tokenizer.eos_id or 0)


def training_examples(tokenizer, text: str, data: Any) -> TokenWindows | LineSamples:
    if data.lines:
        sequences, _ = encode_lines(tokenizer, text, data.block_size + 1)
        return LineSamples(sequences, _pad_id(tokenizer))
    return TokenWindows(tokenizer.encode_tensor(text), data.block_size, data.stride, data.target)


def evaluation_examples(tokenizer, text: str, data: Any) -> EvalSet:
    if data.lines:
        sequences, truncated = encode_lines(tokenizer, text, data.block_size + 1)
        tokens = sum(s.numel() - 1 for s in sequences)  # every token after the leading <eos> is scored
        # a line's closing <eos> stands for its newline, so scored characters are the lines plus newlines
        chars = sum(len(line) + 1 for line in text.splitlines() if line.strip())
        return EvalSet(lambda b: line_eval_batches(sequences, _pad_id(tokenizer), b), tokens, chars, truncated)
    ids = tokenizer.encode_tensor(text)
    return EvalSet(lambda b: eval_batches(ids, data.block_size, data.target, b), ids.numel(), len(text))
