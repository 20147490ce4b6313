"""Text -> the examples a model trains and is evaluated on, for either data shape:
token windows over one stream (windows.py) or independent lines (lines.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from ..errors import TinyLMError
from .lines import LineSamples, encode_lines, line_eval_batches
from .windows import TokenWindows, eval_batches, stream_batches

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
    streams: Callable[[int, int], Batches] | None = None
    """`streams(n, chunk)` yields (x, y) scoring each token once as n contiguous streams read chunk tokens at
    a time (see stream_batches), for models that carry their state; None where the text is not one stream
    (line mode) or only windows are scored (target=last)."""


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
    streams = (lambda n, chunk: stream_batches(ids, n, chunk)) if data.target == "every" else None
    return EvalSet(lambda b: eval_batches(ids, data.block_size, data.target, b, data.stride), ids.numel(), len(text),
                   streams=streams)


def prepared_examples(prepared, data: Any) -> tuple[TokenWindows, EvalSet]:
    """Training windows and the validation set of a prepared folder (`tinylm prepare`), read from its memory
    maps: each batch reads only its own tokens, so memory does not grow with the corpus."""
    where = f"{prepared.path} is a prepared token folder"
    if data.lines:
        raise TinyLMError(f"{where}: its lines are already joined into one token stream, so --lines cannot "
                          f"train on it; train on the text with --lines instead")
    if data.target != "every":
        raise TinyLMError(f"{where}: --target last (windows every few tokens, each indexed in memory) is not "
                          f"supported on it; use --target every, or train on the text")
    if data.val_source:
        raise TinyLMError(f"{where} with its own validation split (val.bin); drop --val-data")
    val = prepared.val
    windows = TokenWindows(prepared.train, data.block_size, data.stride, data.target)
    return windows, EvalSet(lambda b: eval_batches(val, data.block_size, data.target, b), len(val),
                            prepared.val_chars, streams=lambda n, chunk: stream_batches(val, n, chunk))
