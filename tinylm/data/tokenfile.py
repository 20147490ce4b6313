"""Large corpora: tokenize once into memory-mapped token files, then train without reading the text again.

`prepare(source, tokenizer_config, out_dir)` streams the text and never holds it whole. Three passes:
1. count the characters, to put the validation cut exactly where `split_text` puts it (the last
   `val_fraction` of the characters; skipped when the source has its own validation split);
2. build the tokenizer from the training part (char: character counts; word: word counts; bpe: the BPE
   trainer fed chunk by chunk; a pretrained tokenizer needs no pass);
3. encode chunks with the tokenizer's batch encoder (Rust, all cores) into `train.bin` and `val.bin`:
   raw little-endian token ids, uint16 when the vocabulary fits, else uint32.

Chunks are cut only where the tokenizer cuts anyway (after a newline, see `_find_cut`), and each split is
encoded on its own as the in-memory path does, so the ids equal those of `tokenizer.encode(split_text)`
token for token. The folder is written under a hidden staging name and renamed when complete, so a killed
`prepare` leaves nothing half-made.

`open_prepared(folder)` maps the files read-only (numpy.memmap): training gathers each batch by indexing
the map, so its memory does not grow with the corpus.

A prepared folder:
    tokens.json          format version, dtype, tokens and characters of each split, fingerprints
    train.bin, val.bin   token ids
    tokenizer.json, ...  the tokenizer (Tokenizer.save), as in a run directory
"""

from __future__ import annotations

import codecs
import hashlib
import io
import itertools
import json
import mmap
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from ..errors import TinyLMError
from ..io import write_json
from ..rundir import hold, writing_folder
from ..tokenizers import (
    TOKENIZER_BUILDERS,
    Tokenizer,
    TokenizerConfig,
    build_bpe_from_iterator,
    build_char_from_counts,
    build_pretrained,
    build_word_from_counts,
    count_words,
)
from .sources import BUILTIN_ALIASES, BUILTIN_CORPORA, builtin_file, load_corpus

FORMAT = "tinylm-tokens"
FORMAT_VERSION = 1
META = "tokens.json"
SPLITS = ("train", "val")
DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
LARGE_TEXT_BYTES = 200_000_000
"""Text files above this size get a note suggesting `tinylm prepare` when trained on directly."""
READ_BYTES = 1 << 20  # raw bytes read at a time
CHUNK_CHARS = 1 << 16  # characters per encoded chunk (it ends at the next safe cut after this)
HEAD_CHARS = 256  # start of the training text kept in tokens.json (the default sample prompt comes from it)
CHAR_TABLE = True
"""Encode char tokenizers by table lookup (the same ids, 10-50x the backend's speed); False: the backend."""

Tick = Callable[[int], None]  # progress: bytes just read


def token_dtype(vocab_size: int) -> str:
    """The smallest id type that holds every id of the vocabulary."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def is_prepared(source: str | os.PathLike) -> bool:
    """Whether a --data value names a prepared folder (one that holds tokens.json)."""
    path = Path(source).expanduser()
    return path.is_dir() and (path / META).is_file()


def large_text_note(source: str) -> str | None:
    """A one-line suggestion to prepare a text file too large to train on comfortably in memory."""
    path = Path(source).expanduser()
    if not path.is_file() or path.stat().st_size <= LARGE_TEXT_BYTES:
        return None
    return (f"note: {source} is {path.stat().st_size / 1e6:,.0f} MB; `tinylm prepare {source} --out DIR` tokenizes "
            f"it once into memory-mapped token files so that training memory does not grow with the corpus "
            f"(then: tinylm train --data DIR)")


# -- reading text as a stream ------------------------------------------------------------------------
def _file_pieces(path: Path, encoding: str, tick: Tick) -> Iterator[str]:
    """The text of a file READ_BYTES at a time, decoded as `Path.read_text` decodes it (universal newlines)."""
    try:
        inner = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise TinyLMError(f"unknown encoding {encoding!r}") from None
    decoder = io.IncrementalNewlineDecoder(inner, translate=True)
    offset = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(READ_BYTES)
            pending = len(inner.getstate()[0])
            try:
                piece = decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                raise TinyLMError(f"{path} is not valid {encoding} text (byte {offset - pending + e.start}); "
                                  f"pass --encoding (e.g. latin-1) if it is text") from None
            if "\x00" in piece:
                raise TinyLMError(f"{path} looks like a binary file (it contains NUL bytes), not text")
            offset += len(block)
            tick(len(block))
            if piece:
                yield piece
            if not block:
                return


def _folder_pieces(files: list[Path], encoding: str, tick: Tick) -> Iterator[str]:
    """The text `read_folder` makes of `files` (each stripped of leading and trailing newlines, joined by a
    blank line, one newline at the end), streamed: trailing newlines are held back until text follows."""
    for index, path in enumerate(files):
        if index:
            yield "\n\n"
        started, held = False, 0
        for piece in _file_pieces(path, encoding, tick):
            if not started:
                piece = piece.lstrip("\n")
                started = bool(piece)
            body = piece.rstrip("\n")
            if body:
                yield "\n" * held + body
                held = len(piece) - len(body)
            else:
                held += len(piece)
    yield "\n"


def _string_pieces(text: str, tick: Tick) -> Iterator[str]:
    for i in range(0, len(text), READ_BYTES):
        piece = text[i : i + READ_BYTES]
        tick(len(piece.encode("utf-8")))
        yield piece


@dataclass
class _Source:
    """A --data value as streams: `train(tick)` yields the text (split by fraction when `val` is None),
    `val(tick)` the source's own validation text."""

    name: str
    train: Callable[[Tick], Iterator[str]]
    val: Callable[[Tick], Iterator[str]] | None
    nbytes: int  # bytes one pass reads (the progress bars' total)


def _file_source(name: str, path: Path, encoding: str, val: Path | None = None) -> _Source:
    return _Source(name, lambda tick: _file_pieces(path, encoding, tick),
                   None if val is None else (lambda tick: _file_pieces(val, encoding, tick)),
                   path.stat().st_size + (val.stat().st_size if val else 0))


def _resolve(source: str, encoding: str) -> _Source:
    """Like `load_corpus`: hf:NAME, an existing file or folder, then a built-in corpus; but streamed."""
    if source.startswith("hf:"):  # datasets hands over the text whole; only the encoding is streamed
        text = load_corpus(source, encoding).train
        return _Source(source, lambda tick: _string_pieces(text, tick), None, len(text.encode("utf-8")))
    path = Path(source).expanduser()
    if path.is_file():
        return _file_source(source, path, encoding)
    if path.is_dir():
        if is_prepared(path):
            raise TinyLMError(f"{source} is already a prepared folder; train on it with --data {source}")
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise TinyLMError(f"folder {path} holds no .txt files")
        return _Source(source, lambda tick: _folder_pieces(files, encoding, tick), None,
                       sum(p.stat().st_size for p in files))
    base, _, split = source.partition(":")
    base = BUILTIN_ALIASES.get(base, base)
    if base not in BUILTIN_CORPORA:
        names = ", ".join(BUILTIN_CORPORA)
        raise TinyLMError(f"{source!r} is neither a file, a folder, hf:NAME nor a built-in corpus ({names})")
    files = BUILTIN_CORPORA[base]
    if split:
        if split not in files:
            raise TinyLMError(f"corpus {base} has no split {split!r}; choose one of {', '.join(files)}")
        return _file_source(source, builtin_file(files[split]), "utf-8")
    if "valid" in files:
        return _file_source(source, builtin_file(files["train"]), "utf-8", builtin_file(files["valid"]))
    return _file_source(source, builtin_file(files["train"]), "utf-8")


# -- chunks that encode as the whole text does -------------------------------------------------------
def _cut_rule(kind: str) -> str:
    """char and word tokens never span a newline (nor do special tokens), so any newline is a safe cut;
    byte-level BPE (and, checked, a pretrained tokenizer) needs the stricter rule of `_find_cut`."""
    return "newline" if kind in ("char", "word") else "strict"


def _find_cut(buf: str, frm: int, rule: str) -> int | None:
    """The first safe cut at or after `frm` (the index after a newline), or None if `buf` has none yet.

    "strict": the newline sits between two non-space characters. GPT-2's pre-tokenizer regex cuts there too,
    and its lookahead (`\\s+(?!\\S)`) reads the end of the chunk as it reads the text that follows, so a run of
    whitespace is never split between chunks. (Not before " x": a special token's text such as "<eos>" ends
    the segment the regex sees, which would then read "\\n " as one piece. Python's isspace covers every
    character of the regex's \\s, so the test errs on the safe side.)
    """
    i = buf.find("\n", max(frm - 1, 0))
    while i >= 0:
        cut = i + 1
        if rule == "newline":
            return cut
        if cut >= len(buf):
            return None  # the character that decides is not read yet
        if i > 0 and not buf[i - 1].isspace() and not buf[cut].isspace():
            return cut
        i = buf.find("\n", cut)
    return None


def _chunks(pieces: Iterable[str], size: int, rule: str) -> Iterator[str]:
    """Re-cut a stream of text pieces into chunks of about `size` characters ending at safe cuts."""
    buf, start, scanned = "", 0, 0
    for piece in pieces:
        buf, scanned = buf[start:] + piece, max(scanned - start, 0)
        start = 0
        while len(buf) - start > size:
            cut = _find_cut(buf, max(start + size, scanned), rule)
            if cut is None:
                scanned = max(len(buf) - 1, 0)  # a text with no cut for long: do not rescan it
                break
            yield buf[start:cut]
            start = cut
    if buf[start:]:
        yield buf[start:]


def _split_at(pieces: Iterable[str], cut: int) -> Iterator[tuple[int, str]]:
    """(0, piece) for the text before character `cut`, (1, piece) after it."""
    pos = 0
    for piece in pieces:
        head = max(0, min(len(piece), cut - pos))
        if head:
            yield 0, piece[:head]
        if head < len(piece):
            yield 1, piece[head:]
        pos += len(piece)


# -- encoding ----------------------------------------------------------------------------------------
def _char_table_encoder(tokenizer: Tokenizer, dtype: np.dtype) -> Callable[[str], np.ndarray | None]:
    """Char-tokenizer ids by table lookup. The backend splits the text into code points and looks each up
    (<unk> when missing) after matching special tokens' text; a chunk holding such text, or a code point
    that UTF-32 cannot carry, returns None and goes through the backend."""
    vocab = tokenizer.backend.get_vocab(with_added_tokens=True)
    specials = [token for token in vocab if len(token) > 1]
    singles = {ord(token): i for token, i in vocab.items() if len(token) == 1}
    top = max(singles, default=0)
    table = np.full(top + 2, tokenizer.unk_id, dtype=dtype)  # the last entry: every code point above `top`
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


def _batch_encoder(tokenizer: Tokenizer, dtype: np.dtype) -> Callable[[list[str]], list[np.ndarray]]:
    """Encode a batch of chunks: `encode_batch` runs them in parallel on all cores (Rayon)."""
    table = _char_table_encoder(tokenizer, dtype) if CHAR_TABLE and tokenizer.kind == "char" else None

    # encode_batch_fast (tokenizers >= 0.21) skips the character offsets, which the ids do not need
    encode_batch = getattr(tokenizer.backend, "encode_batch_fast", tokenizer.backend.encode_batch)

    def backend(chunks: list[str]) -> list[np.ndarray]:
        return [np.asarray(e.ids, dtype=dtype) for e in encode_batch(chunks, add_special_tokens=False)]

    def encode(chunks: list[str]) -> list[np.ndarray]:
        if table is None:
            return backend(chunks)
        out = [table(chunk) for chunk in chunks]
        rest = [i for i, ids in enumerate(out) if ids is None]
        for i, ids in zip(rest, backend([chunks[i] for i in rest]) if rest else []):
            out[i] = ids
        return out

    return encode


def encode_text(tokenizer: Tokenizer, text: str) -> torch.Tensor | None:
    """The ids of a whole in-memory text, encoded in chunks cut where the tokens do not change (as `prepare`
    cuts them), in parallel: the same ids as one `encode`, without the ~360 bytes per character that one
    Encoding of the whole text holds. None for a pretrained tokenizer, whose cuts are not known to be safe."""
    if tokenizer.kind not in TOKENIZER_BUILDERS:
        return None
    encode = _batch_encoder(tokenizer, np.dtype(token_dtype(tokenizer.vocab_size)))
    chunks = list(_chunks(_string_pieces(text, lambda n: None), CHUNK_CHARS, _cut_rule(tokenizer.kind)))
    batch = max(8, 4 * (os.cpu_count() or 1))
    arrays = [ids for i in range(0, len(chunks), batch) for ids in encode(chunks[i : i + batch])]
    return torch.from_numpy(np.concatenate(arrays).astype(np.int64)) if arrays else torch.zeros(0, dtype=torch.long)


def _check_cut(tokenizer: Tokenizer, before: str, after: str) -> None:
    """A pretrained tokenizer may treat the start of a text specially (a prefix space, say): make sure a cut
    does not change the ids around it."""
    a, b = before[-200:], after[:200]
    if tokenizer.encode(a + b) != tokenizer.encode(a) + tokenizer.encode(b):
        raise TinyLMError(f"tokenizer {tokenizer.kind!r} encodes a text cut at a line break differently from the "
                          f"whole text, so it cannot be prepared chunk by chunk; train on the text instead")


class _Peek:
    """An iterator of (split, piece) that can hand back the one item read past a split's end."""

    def __init__(self, items: Iterator[tuple[int, str]]):
        self.items, self.held = items, None

    def __iter__(self) -> _Peek:
        return self

    def __next__(self) -> tuple[int, str]:
        if self.held is not None:
            item, self.held = self.held, None
            return item
        return next(self.items)


def _split_stream(parts: _Peek, index: int) -> Iterator[str]:
    """The pieces of split `index` from the front of `parts`; the first piece of the next split is held back."""
    for split, piece in parts:
        if split != index:
            parts.held = (split, piece)
            return
        yield piece


@dataclass
class _Split:
    tokens: int = 0
    chars: int = 0
    blank: bool = True  # only whitespace so far
    head: str = ""


@dataclass
class _Encoded:
    splits: list[_Split] = field(default_factory=lambda: [_Split(), _Split()])
    data_sha256: str = ""


def _encode(parts: _Peek, tokenizer: Tokenizer, dtype: np.dtype, folder: Path) -> _Encoded:
    """Encode (split, piece) pairs into folder/train.bin and folder/val.bin; hash the text as training does.
    Each split is chunked and encoded on its own, as the in-memory path encodes each split whole."""
    result, digest = _Encoded(), hashlib.sha256()
    encode, rule = _batch_encoder(tokenizer, dtype), _cut_rule(tokenizer.kind)
    check = tokenizer.kind not in TOKENIZER_BUILDERS
    batch_size = max(8, 4 * (os.cpu_count() or 1))
    for index, name in enumerate(SPLITS):
        if index:
            digest.update(b"\0")  # _fingerprint(train, val) of the training loop
        stats = result.splits[index]
        with open(folder / f"{name}.bin", "wb") as out:
            batch: list[str] = []
            previous = ""

            def flush() -> None:
                for ids in encode(batch):
                    out.write(ids.tobytes())
                    stats.tokens += len(ids)
                batch.clear()

            for chunk in _chunks(_split_stream(parts, index), CHUNK_CHARS, rule):
                if check and previous:
                    _check_cut(tokenizer, previous, chunk)
                previous = chunk
                digest.update(chunk.encode("utf-8"))
                stats.chars += len(chunk)
                stats.blank = stats.blank and chunk.isspace()
                if len(stats.head) < HEAD_CHARS:
                    stats.head += chunk[: HEAD_CHARS - len(stats.head)]
                batch.append(chunk)
                if len(batch) >= batch_size:
                    flush()
            flush()
            out.flush()
            os.fsync(out.fileno())
    result.data_sha256 = digest.hexdigest()
    return result


# -- prepare -----------------------------------------------------------------------------------------
PREPARED_ENTRIES = {"train.bin", "val.bin", "tokens.json", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja"}


def _check_out(out: Path, overwrite: bool) -> None:
    from ..rundir import check_output

    check_output(out, what="a prepared corpus", is_same_kind=lambda folder: (folder / META).is_file(),
                 overwrite=overwrite, allowed=PREPARED_ENTRIES)


def _progress(progress: bool, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
                dynamic_ncols=True, leave=False)


def _count_chars(piece: str, counts: Counter) -> None:
    """counts.update(piece), ten times faster: numpy counts the code points."""
    try:
        points = np.frombuffer(piece.encode("utf-32-le"), dtype="<u4")
    except UnicodeEncodeError:  # lone surrogates
        counts.update(piece)
        return
    bins = np.bincount(points)
    for point in np.flatnonzero(bins).tolist():
        counts[chr(point)] += int(bins[point])


def _build_tokenizer(config: TokenizerConfig, pieces: Iterator[str]) -> Tokenizer:
    if config.kind == "char":
        counts: Counter = Counter()
        for piece in pieces:
            _count_chars(piece, counts)
        return build_char_from_counts(config, counts)
    if config.kind == "word":
        counts = Counter()
        for chunk in _chunks(pieces, CHUNK_CHARS, "newline"):
            count_words(chunk, counts)
        return build_word_from_counts(config, counts)
    return build_bpe_from_iterator(config, _chunks(pieces, CHUNK_CHARS, "strict"))


def prepare(source: str, tokenizer_config: TokenizerConfig | None = None, out_dir: str | os.PathLike = "",
            val_fraction: float = 0.1, encoding: str = "utf-8", progress: bool = True,
            overwrite: bool = False) -> PreparedCorpus:
    """Tokenize `source` (a file, a folder of .txt, a built-in corpus or hf:NAME) into `out_dir`; return it
    opened. The validation split is the source's own, or else the last `val_fraction` of the characters."""
    config = tokenizer_config or TokenizerConfig()
    if not out_dir:
        raise TinyLMError("prepare needs an output folder (--out DIR)")
    out = Path(out_dir)
    if not 0.0 <= val_fraction < 1.0:
        raise TinyLMError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    _check_out(out, overwrite)
    src = _resolve(source, encoding)
    t0 = time.perf_counter()
    # A bad --vocab-size or tokenizer name fails now, not after a pass over the text.
    tokenizer = TOKENIZER_BUILDERS.get(config.kind, build_pretrained)(config, "a\n")
    trained = config.kind in TOKENIZER_BUILDERS

    cut = None
    if src.val is None:
        chars, first, last = 0, None, -1
        with _progress(progress, src.nbytes, "count") as bar:
            for piece in src.train(bar.update):
                if not piece.isspace():  # where the non-blank text starts and ends, to refuse an empty split now
                    first = chars + len(piece) - len(piece.lstrip()) if first is None else first
                    last = chars + len(piece.rstrip()) - 1
                chars += len(piece)
        cut = int(chars * (1.0 - val_fraction))  # split_text's cut
        if first is None or first >= cut:
            raise TinyLMError(f"the training text of {source!r} is empty (or only whitespace)")
        if last < cut:
            raise TinyLMError(f"the validation split of {source!r} is empty: raise --val-fraction")

    if trained:
        with _progress(progress, src.nbytes, "tokenizer") as bar:
            pieces = src.train(bar.update)
            if cut is not None:  # the training part only: stop reading at the cut
                pieces = (p for _, p in itertools.takewhile(lambda part: part[0] == 0, _split_at(pieces, cut)))
            tokenizer = _build_tokenizer(config, pieces)
    dtype = token_dtype(tokenizer.vocab_size)

    # Written whole beside `out`, then renamed into place: a kill or a full disk leaves the old folder or the new
    # one, and a second `prepare` into the same folder is refused while this one runs.
    with hold(out), writing_folder(out) as staging:
        _check_out(out, overwrite)  # again, now that no other process writes it
        with _progress(progress, src.nbytes, "encode") as bar:
            if src.val is None:
                parts = _split_at(src.train(bar.update), cut)
            else:
                parts = itertools.chain(((0, p) for p in src.train(bar.update)),
                                        ((1, p) for p in src.val(bar.update)))
            encoded = _encode(_Peek(parts), tokenizer, DTYPES[dtype], staging)
        train, val = encoded.splits
        if train.blank:
            raise TinyLMError(f"the training text of {source!r} is empty (or only whitespace)")
        if val.blank:
            raise TinyLMError(f"the validation split of {source!r} is empty: raise --val-fraction")
        tokenizer.save(staging)
        seconds = time.perf_counter() - t0
        write_json(staging / META, {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "dtype": dtype,
            "vocab_size": tokenizer.vocab_size,
            "tokenizer": tokenizer.kind,
            "tokenizer_config": asdict(config),
            "tokenizer_sha256": _file_sha256(staging / "tokenizer.json"),
            "source": source,
            "encoding": encoding,
            "val_split": "fraction" if src.val is None else "source",
            "val_fraction": val_fraction if src.val is None else None,
            "train": {"tokens": train.tokens, "chars": train.chars},
            "val": {"tokens": val.tokens, "chars": val.chars},
            "data_sha256": encoded.data_sha256,
            "head": train.head,
            "source_bytes": src.nbytes,
            "seconds": round(seconds, 3),
        })
    return open_prepared(out)


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- loading -----------------------------------------------------------------------------------------
@dataclass
class PreparedCorpus:
    """A prepared folder, opened: its tokenizer, and the ids of each split as read-only memory maps."""

    path: Path
    tokenizer: Tokenizer
    train: np.ndarray
    """Training ids (numpy.memmap, read-only)."""
    val: np.ndarray
    """Validation ids (numpy.memmap, read-only)."""
    meta: dict
    """tokens.json."""

    @property
    def dtype(self) -> str:
        return self.meta["dtype"]

    @property
    def train_chars(self) -> int:
        return self.meta["train"]["chars"]

    @property
    def val_chars(self) -> int:
        return self.meta["val"]["chars"]

    @property
    def data_sha256(self) -> str:
        """sha256 of the training text, a NUL, and the validation text (the training loop's fingerprint)."""
        return self.meta["data_sha256"]

    @property
    def fingerprint(self) -> str:
        """What a run checks before it resumes: the text and the tokenizer it was cut with."""
        return hashlib.sha256(f"{self.data_sha256}\0{self.meta['tokenizer_sha256']}".encode()).hexdigest()

    @property
    def tokenizer_config(self) -> TokenizerConfig:
        return TokenizerConfig(**self.meta["tokenizer_config"])

    @property
    def head(self) -> str:
        """The first characters of the training text."""
        return self.meta.get("head", "")

    def summary(self) -> str:
        m = self.meta
        rate = m["source_bytes"] / 1e6 / max(m["seconds"], 1e-9)
        return (f"{self.path}: {len(self.train):,} training / {len(self.val):,} validation tokens ({self.dtype}), "
                f"{self.tokenizer.kind} tokenizer, vocabulary {self.tokenizer.vocab_size}; "
                f"{m['source_bytes'] / 1e6:,.1f} MB in {m['seconds']:.1f} s ({rate:.2f} MB/s)")


def _corrupted(path: Path, why: str) -> TinyLMError:
    return TinyLMError(f"{path} is corrupted ({why}); make the folder again: tinylm prepare SOURCE --out "
                       f"{path.parent} --overwrite")


def _map(path: Path, dtype: np.dtype, count: int, advice: int | None) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype=dtype)
    ids = np.memmap(path, dtype=dtype, mode="r", shape=(count,))
    if advice is not None and hasattr(ids, "_mmap") and hasattr(ids._mmap, "madvise"):
        ids._mmap.madvise(advice)  # random windows: no read-ahead of pages a batch does not need
    return ids


def _largest_id(ids: np.ndarray, chunk: int = 1 << 26) -> int:
    """The largest token id of a split, read in chunks (about 0.1 s per 100M ids): a damaged file whose ids
    exceed the vocabulary is refused here, not met as an index error in the middle of training."""
    return max((int(ids[i : i + chunk].max()) for i in range(0, len(ids), chunk)), default=-1)


def open_prepared(folder: str | os.PathLike) -> PreparedCorpus:
    """Open a folder made by `prepare`, checking tokens.json against the files it describes."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise TinyLMError(f"{folder}: no such prepared folder (make one with: tinylm prepare SOURCE --out {folder})")
    meta_path = folder / META
    if not meta_path.is_file():
        raise TinyLMError(f"{folder} has no {META}: it is not a folder made by tinylm prepare")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _corrupted(meta_path, f"not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _corrupted(meta_path, f"not a {FORMAT} file")
    if meta.get("version") != FORMAT_VERSION:
        raise TinyLMError(f"{meta_path} has format version {meta.get('version')!r}; this tinylm reads version "
                          f"{FORMAT_VERSION}: prepare the folder again")
    try:
        dtype = DTYPES[meta["dtype"]]
        counts = [int(meta[name]["tokens"]) for name in SPLITS]
        if min(counts + [int(meta[name]["chars"]) for name in SPLITS]) < 0:
            raise ValueError("a negative count")
        vocab_size = int(meta["vocab_size"])
        TokenizerConfig(**meta["tokenizer_config"])
        for key in ("data_sha256", "tokenizer_sha256"):
            if not isinstance(meta[key], str):
                raise TypeError(key)
    except (KeyError, TypeError, ValueError) as e:
        raise _corrupted(meta_path, f"missing or bad field {e}") from None
    tokenizer = Tokenizer.load(folder)
    if _file_sha256(folder / "tokenizer.json") != meta["tokenizer_sha256"]:
        raise TinyLMError(f"{folder / 'tokenizer.json'} changed since the folder was prepared (its ids no longer "
                          f"match the token files); prepare it again")
    if tokenizer.vocab_size != vocab_size or token_dtype(vocab_size) != meta["dtype"]:
        raise _corrupted(meta_path, f"vocabulary {vocab_size} / {meta['dtype']} against a tokenizer of "
                                    f"{tokenizer.vocab_size} tokens")
    arrays = []
    for name, count in zip(SPLITS, counts):
        path = folder / f"{name}.bin"
        if not path.is_file():
            raise TinyLMError(f"{path} is missing: the prepared folder is incomplete; prepare it again")
        size, expected = path.stat().st_size, count * dtype.itemsize
        if size != expected:
            raise TinyLMError(f"{path} holds {size:,} bytes but {META} says {count:,} {meta['dtype']} tokens "
                              f"({expected:,} bytes): the folder is incomplete or corrupted; prepare it again")
        advice = getattr(mmap, "MADV_RANDOM", None) if name == "train" else None
        ids = _map(path, dtype, count, advice)
        largest = _largest_id(ids)
        if largest >= vocab_size:
            raise _corrupted(path, f"it holds token id {largest}, past the vocabulary of {vocab_size}")
        arrays.append(ids)
    return PreparedCorpus(folder, tokenizer, arrays[0], arrays[1], meta)


def fixed_tokenizer_config(prepared: PreparedCorpus, requested: TokenizerConfig) -> TokenizerConfig:
    """The folder's tokenizer settings; a run that asks for other ones (anything but the defaults) is refused."""
    own = prepared.tokenizer_config
    if requested not in (TokenizerConfig(), own):
        raise TinyLMError(f"{prepared.path} is prepared with its own tokenizer ({own.kind}, vocabulary "
                          f"{prepared.tokenizer.vocab_size}); drop --tokenizer/--vocab-size/--min-freq, or prepare "
                          f"the text again with them")
    return own
