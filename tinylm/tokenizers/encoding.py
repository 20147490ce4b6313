"""Encoding a long text in parallel: cut it into chunks that encode to the ids the whole text encodes to, and
encode a batch of chunks at a time with the tokenizer's Rust batch encoder (`encode_batch`, all cores).

Where a chunk may end is the tokenizer's answer (`Tokenizer.strategy`, an EncodingStrategy), never a guess here:
- NEWLINE: after any newline. Char and word tokens never span a newline, nor does special-token text.
- BETWEEN_WORDS: after a newline that sits between two non-space characters. GPT-2's pre-tokenizer regex
  (byte-level BPE) cuts there too, and its lookahead (`\\s+(?!\\S)`) reads the end of a chunk as it reads the
  text that follows, so a run of whitespace is never split between chunks. (Not before " x": a special token's
  text such as "<eos>" ends the segment the regex sees, which would then read "\\n " as one piece. Python's
  isspace covers every character of the regex's \\s, so the test errs on the safe side.)
A tokenizer whose cuts are not proven safe (a pretrained one) has each cut checked as the chunks are made.

This module knows no tokenizer kinds: `tinylm.tokenizers.Tokenizer` owns it and hands it its backend and
strategy (so the import goes one way: tokenizers -> encoding).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import tokenizers as hf

from ..errors import TinyLMError

NEWLINE, BETWEEN_WORDS = "newline", "between-words"
CHUNK_CHARS = 1 << 16  # characters per encoded chunk (it ends at the next safe cut after this)


@dataclass(frozen=True)
class EncodingStrategy:
    """How a tokenizer's ids of a long text may be computed chunk by chunk."""

    cut: str = BETWEEN_WORDS
    """Where a chunk may end: NEWLINE or BETWEEN_WORDS (see the module's docstring)."""
    cuts_proven: bool = True
    """False: the rule is not known to hold for this tokenizer, so every cut is checked (a cut that changes the
    ids is an error), and a text in memory is encoded whole instead."""
    char_table: bool = False
    """One token per code point: ids by numpy table lookup (10-50x the backend's speed, the same ids)."""


def find_cut(buf: str, frm: int, rule: str) -> int | None:
    """The first safe cut at or after `frm` (the index after a newline), or None if `buf` has none yet."""
    i = buf.find("\n", max(frm - 1, 0))
    while i >= 0:
        cut = i + 1
        if rule == NEWLINE:
            return cut
        if cut >= len(buf):
            return None  # the character that decides is not read yet
        if i > 0 and not buf[i - 1].isspace() and not buf[cut].isspace():
            return cut
        i = buf.find("\n", cut)
    return None


def chunks(pieces: Iterable[str], rule: str, size: int | None = None) -> Iterator[str]:
    """Re-cut a stream of text pieces into chunks of about `size` (CHUNK_CHARS) characters ending at safe cuts."""
    size = size or CHUNK_CHARS
    buf, start, scanned = "", 0, 0
    for piece in pieces:
        buf, scanned = buf[start:] + piece, max(scanned - start, 0)
        start = 0
        while len(buf) - start > size:
            cut = find_cut(buf, max(start + size, scanned), rule)
            if cut is None:
                scanned = max(len(buf) - 1, 0)  # a text with no cut for long: do not rescan it
                break
            yield buf[start:cut]
            start = cut
    if buf[start:]:
        yield buf[start:]


def _char_table_encoder(backend: hf.Tokenizer, unk_id: int, dtype: np.dtype) -> Callable[[str], np.ndarray | None]:
    """Char-tokenizer ids by table lookup. The backend splits the text into code points and looks each up
    (<unk> when missing) after matching special tokens' text; a chunk holding such text, or a code point
    that UTF-32 cannot carry, returns None and goes through the backend."""
    vocab = backend.get_vocab(with_added_tokens=True)
    specials = [token for token in vocab if len(token) > 1]
    singles = {ord(token): i for token, i in vocab.items() if len(token) == 1}
    top = max(singles, default=0)
    table = np.full(top + 2, unk_id, dtype=dtype)  # the last entry: every code point above `top`
    table[list(singles)] = list(singles.values())

    def encode(chunk: str) -> np.ndarray | None:
        if any(token in chunk for token in specials):
            return None
        try:
            points = np.frombuffer(chunk.encode("utf-32-le"), dtype="<u4")
        except UnicodeEncodeError:  # lone surrogates
            return None
        return table[np.minimum(points, top + 1)]

    return encode


def batch_encoder(backend: hf.Tokenizer, strategy: EncodingStrategy, dtype: np.dtype,
                  unk_id: int | None = None) -> Callable[[list[str]], list[np.ndarray]]:
    """Encode a batch of chunks: `encode_batch` runs them in parallel on all cores (Rayon); a char table, when
    the strategy allows one, takes the chunks it can."""
    table = _char_table_encoder(backend, unk_id, dtype) if strategy.char_table and unk_id is not None else None
    # encode_batch_fast (tokenizers >= 0.21) skips the character offsets, which the ids do not need
    encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)

    def on_backend(batch: list[str]) -> list[np.ndarray]:
        return [np.asarray(e.ids, dtype=dtype) for e in encode_batch(batch, add_special_tokens=False)]

    def encode(batch: list[str]) -> list[np.ndarray]:
        if table is None:
            return on_backend(batch)
        out = [table(chunk) for chunk in batch]
        rest = [i for i, ids in enumerate(out) if ids is None]
        for i, ids in zip(rest, on_backend([batch[i] for i in rest]) if rest else []):
            out[i] = ids
        return out

    return encode


def check_cut(backend: hf.Tokenizer, before: str, after: str, name: str) -> None:
    """A tokenizer may treat the start of a text specially (a prefix space, say): make sure a cut does not
    change the ids around it."""
    a, b = before[-200:], after[:200]

    def ids(text: str) -> list[int]:
        return backend.encode(text, add_special_tokens=False).ids

    if ids(a + b) != ids(a) + ids(b):
        raise TinyLMError(f"tokenizer {name!r} encodes a text cut at a line break differently from the whole "
                          f"text, so it cannot be prepared chunk by chunk; train on the text instead")


def batch_size() -> int:
    """Chunks per encode_batch call: enough to keep every core busy."""
    return max(8, 4 * (os.cpu_count() or 1))


def encode_stream(backend: hf.Tokenizer, strategy: EncodingStrategy, pieces: Iterable[str], dtype: np.dtype,
                  unk_id: int | None = None, name: str = "") -> Iterator[tuple[str, np.ndarray]]:
    """(chunk, ids) for the chunks of a text given as a stream of pieces, in order: the ids, joined, are those
    of encoding the whole text at once. `name` names the tokenizer in the error of a cut that changes ids."""
    encode = batch_encoder(backend, strategy, dtype, unk_id)
    size, batch, previous = batch_size(), [], ""
    for chunk in chunks(pieces, strategy.cut):
        if not strategy.cuts_proven and previous:
            check_cut(backend, previous, chunk, name)
        previous = chunk
        batch.append(chunk)
        if len(batch) >= size:
            yield from zip(batch, encode(batch))
            batch = []
    if batch:
        yield from zip(batch, encode(batch))
