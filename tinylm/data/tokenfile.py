"""Large corpora: tokenize once into memory-mapped token files, then train without reading the text again.

`prepare(source, tokenizer_config, out_dir)` streams the text (`data/sources.py` finds and reads it) and never
holds it whole. Three passes:
1. count the characters, to put the validation cut exactly where `split_text` puts it (the last
   `val_fraction` of the characters; skipped when the source has its own validation split);
2. build the tokenizer from the training part (`build_tokenizer_from_stream`; a pretrained one needs no pass);
3. encode each split with `Tokenizer.encode_stream` (chunks cut where that tokenizer's ids do not change,
   encoded in parallel batches) into `train.bin` and `val.bin`: raw little-endian token ids, uint16 when the
   vocabulary fits, else uint32.

Each split is encoded on its own as the in-memory path does, so the ids equal those of
`tokenizer.encode(split_text)` token for token. The folder is written under a staging name and renamed when
complete (`tinylm.folders.writing_output`), so a killed `prepare` leaves nothing half-made.

`open_prepared(folder)` maps the files read-only (numpy.memmap): training gathers each batch by indexing
the map, so its memory does not grow with the corpus.

A prepared folder:
    tokens.json          format version, dtype, tokens and characters of each split, fingerprints
    train.bin, val.bin   token ids
    tokenizer.json, ...  the tokenizer (Tokenizer.save), as in a run directory
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import TinyLMError
from ..folders import OutputKind, writing_output
from ..io import write_json
from ..run import migrations
from ..tokenizers import Tokenizer, TokenizerConfig, build_tokenizer, build_tokenizer_from_stream, token_dtype
from .sources import check_val_fraction, find_source
from .windows import release_pages

FORMAT = "tinylm-tokens"
META = "tokens.json"
SPLITS = ("train", "val")
DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
LARGE_TEXT_BYTES = 200_000_000
"""Text files above this size get a note suggesting `tinylm prepare` when trained on directly."""
HEAD_CHARS = 256  # start of the training text kept in tokens.json (the default sample prompt comes from it)


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


# -- encoding the splits ---------------------------------------------------------------------------------
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


def _encode(streams: tuple[Iterator[str], Iterator[str]], tokenizer: Tokenizer, dtype: np.dtype,
            folder: Path) -> _Encoded:
    """Encode the training and validation streams into folder/train.bin and folder/val.bin, each on its own as
    the in-memory path encodes each split whole; hash the text as training does."""
    result, digest = _Encoded(), hashlib.sha256()
    for index, (name, pieces) in enumerate(zip(SPLITS, streams)):
        if index:
            digest.update(b"\0")  # training fingerprints its text the same way: train, a NUL, val
        stats = result.splits[index]
        with open(folder / f"{name}.bin", "wb") as out:
            for chunk, ids in tokenizer.encode_stream(pieces, dtype):
                out.write(ids.tobytes())
                stats.tokens += len(ids)
                digest.update(chunk.encode("utf-8"))
                stats.chars += len(chunk)
                stats.blank = stats.blank and chunk.isspace()
                if len(stats.head) < HEAD_CHARS:
                    stats.head += chunk[: HEAD_CHARS - len(stats.head)]
            out.flush()
            os.fsync(out.fileno())
    result.data_sha256 = digest.hexdigest()
    return result


# -- prepare -----------------------------------------------------------------------------------------
PREPARED_ENTRIES = {"train.bin", "val.bin", "tokens.json", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja"}


PREPARED_FOLDER = OutputKind("a prepared corpus", lambda folder: is_prepared(folder), frozenset(PREPARED_ENTRIES))
"""A prepared corpus as an output folder (tinylm.folders)."""


def _progress(progress: bool, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
                dynamic_ncols=True, leave=False)


def prepare(source: str, tokenizer_config: TokenizerConfig | None = None, out_dir: str | os.PathLike = "",
            val_fraction: float = 0.1, encoding: str = "utf-8", progress: bool = True,
            overwrite: bool = False) -> PreparedCorpus:
    """Tokenize `source` (a file, a folder of .txt, a built-in corpus, hf:NAME or gutenberg:ID) into `out_dir`;
    return it opened. The validation split is the source's own, or else the last `val_fraction` of the
    characters."""
    config = tokenizer_config or TokenizerConfig()
    if not out_dir:
        raise TinyLMError("prepare needs an output folder (--out DIR)")
    out = Path(out_dir)
    check_val_fraction(val_fraction)
    PREPARED_FOLDER.check(out, overwrite)  # before a pass over the text
    if is_prepared(source):
        raise TinyLMError(f"{source} is already a prepared folder; train on it with --data {source}")
    found = find_source(source, encoding)
    nbytes = found.nbytes  # once: for a Hugging Face dataset it is a pass over the whole text
    t0 = time.perf_counter()
    # A bad --vocab-size or tokenizer name fails now, not after a pass over the text.
    tokenizer = build_tokenizer(config, "a\n")

    cut = None
    if found.val is None:
        with _progress(progress, nbytes, "count") as bar:
            cut = found.fraction_cut(val_fraction, bar.update)
    if tokenizer.learns_from_text or config.retrains:
        with _progress(progress, nbytes, "tokenizer") as bar:
            training_text, _ = found.split_streams(cut, bar.update)
            tokenizer = build_tokenizer_from_stream(config, training_text)
    dtype = token_dtype(tokenizer.vocab_size)

    # Written whole beside `out`, then renamed into place: a kill or a full disk leaves the old folder or the new
    # one, and a second `prepare` into the same folder is refused while this one runs.
    with writing_output(PREPARED_FOLDER, out, overwrite=overwrite) as staging:
        with _progress(progress, nbytes, "encode") as bar:
            encoded = _encode(found.split_streams(cut, bar.update), tokenizer, DTYPES[dtype], staging)
        train, val = encoded.splits
        if train.blank:
            raise TinyLMError(f"the training text of {source!r} is empty (or only whitespace)")
        if val.blank:
            raise TinyLMError(f"the validation split of {source!r} is empty: raise --val-fraction")
        tokenizer.save(staging)
        seconds = time.perf_counter() - t0
        write_json(staging / META, {"format": FORMAT, **migrations.stamp(migrations.TOKENS_JSON, {
            "dtype": dtype,
            "vocab_size": tokenizer.vocab_size,
            "tokenizer": tokenizer.kind,
            "tokenizer_config": asdict(config),
            "tokenizer_sha256": _file_sha256(staging / "tokenizer.json"),
            "source": source,
            "encoding": encoding,
            "val_split": "fraction" if found.val is None else "source",
            "val_fraction": val_fraction if found.val is None else None,
            "train": {"tokens": train.tokens, "chars": train.chars},
            "val": {"tokens": val.tokens, "chars": val.chars},
            "data_sha256": encoded.data_sha256,
            "head": train.head,
            "source_bytes": nbytes,
            "seconds": round(seconds, 3),
        })})
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


def _map_checked(path: Path, dtype: np.dtype, count: int, vocab_size: int, random_access: bool) -> np.ndarray:
    """The split's token ids, memory-mapped, once every id is checked to be in the vocabulary (read in chunks,
    about 0.03 s per 100M ids from the page cache): a damaged file is refused here, not met as an index error in
    the middle of training. The scan's pages are released after it (memory stays flat, as training keeps it), and
    only then is the training split told it will be read at random (no read-ahead a batch does not need)."""
    if count == 0:
        return np.zeros(0, dtype=dtype)
    ids = np.memmap(path, dtype=dtype, mode="r", shape=(count,))
    chunk = 1 << 26
    largest = max(int(ids[i : i + chunk].max()) for i in range(0, count, chunk))
    release_pages(ids)
    if largest >= vocab_size:
        raise _corrupted(path, f"it holds token id {largest}, past the vocabulary of {vocab_size}")
    advice = getattr(mmap, "MADV_RANDOM", None)
    if random_access and advice is not None and hasattr(ids, "_mmap") and hasattr(ids._mmap, "madvise"):
        ids._mmap.madvise(advice)
    return ids


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
    meta = migrations.upgrade(migrations.TOKENS_JSON, meta, meta_path)  # an older format climbs to the current one
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
        arrays.append(_map_checked(path, dtype, count, vocab_size, random_access=name == "train"))
    return PreparedCorpus(folder, tokenizer, arrays[0], arrays[1], meta)


def fixed_tokenizer_config(prepared: PreparedCorpus, requested: TokenizerConfig) -> TokenizerConfig:
    """The folder's tokenizer settings; a run that asks for other ones (anything but the defaults) is refused."""
    own = prepared.tokenizer_config
    if requested not in (TokenizerConfig(), own):
        raise TinyLMError(f"{prepared.path} is prepared with its own tokenizer ({own.kind}, vocabulary "
                          f"{prepared.tokenizer.vocab_size}); drop --tokenizer/--vocab-size/--min-freq, or prepare "
                          f"the text again with them")
    return own
