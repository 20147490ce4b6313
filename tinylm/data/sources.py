"""Where text comes from: a file, a folder of .txt files, a built-in corpus, or a Hugging Face dataset.

Built-in corpora resolve, in order, from `$TINYLM_DATA_DIR` (a folder laid out like `shakespeare/`'s
`tinyshakespeare/input.txt`), the user cache (`$TINYLM_CACHE_DIR`, default `~/.cache/tinylm`), and a
download from the canonical URL that is verified before it is cached. Offline with no copy, the error
says exactly where to put the file.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import TinyLMError


@dataclass(frozen=True)
class CorpusFile:
    relpath: str  # path under TINYLM_DATA_DIR / the cache
    url: str
    sha256: str | None  # pinned checksum; None where no checksum is published
    min_bytes: int = 0  # plausibility checks for files without a pinned checksum
    max_bytes: int = 1 << 40
    starts_with: str = ""
    contains: str = ""  # a regular expression (any case) that must match near the beginning of the file


_WT2 = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/"

# name -> split -> file. A corpus with only "train" is split by --val-fraction.
BUILTIN_CORPORA: dict[str, dict[str, CorpusFile]] = {
    "shakespeare": {
        "train": CorpusFile(
            "tinyshakespeare/input.txt",
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        )
    },
    "wikitext2": {
        # No checksum is published for train.txt: a download is checked for size and first line instead.
        "train": CorpusFile(
            "wikitext-2/train.txt", _WT2 + "train.txt", None, 10_500_000, 11_500_000, " \n = Valkyria Chronicles III"
        ),
        "valid": CorpusFile(
            "wikitext-2/valid.txt", _WT2 + "valid.txt",
            "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
        ),
        "test": CorpusFile(
            "wikitext-2/test.txt", _WT2 + "test.txt",
            "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
        ),
    },
}
BUILTIN_ALIASES = {"tinyshakespeare": "shakespeare", "tiny-shakespeare": "shakespeare", "wikitext-2": "wikitext2"}


@dataclass
class Corpus:
    """Text of one source: `train` and, when the source has its own validation split, `val`."""

    name: str
    train: str
    val: str | None = None


def cache_dir() -> Path:
    xdg_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    root = os.environ.get("TINYLM_CACHE_DIR") or xdg_cache / "tinylm"
    return Path(root)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, spec: CorpusFile) -> str | None:
    """Return why `path` is not the expected file, or None if it is."""
    if spec.sha256 is not None:
        got = _sha256(path)
        return None if got == spec.sha256 else f"sha256 {got} != expected {spec.sha256}"
    size = path.stat().st_size
    if not spec.min_bytes <= size <= spec.max_bytes:
        return f"size {size} bytes outside the expected {spec.min_bytes}-{spec.max_bytes}"
    with open(path, "rb") as f:
        head = f.read(len(spec.starts_with.encode()))
    if head != spec.starts_with.encode():
        return "unexpected beginning of file"
    if spec.contains:
        with open(path, "rb") as f:
            head = f.read(1 << 18).decode("utf-8", errors="replace")
        if not re.search(spec.contains, head, re.IGNORECASE | re.MULTILINE):
            return "not the expected kind of text (a marker line is missing near its beginning)"
    return None


def _download(spec: CorpusFile, dest: Path, timeout: float = 30.0) -> None:
    tmp = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(spec.url, timeout=timeout) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        tmp.unlink(missing_ok=True)
        raise ConnectionError(str(e)) from e
    problem = _verify(tmp, spec)
    if problem:
        tmp.unlink(missing_ok=True)
        raise TinyLMError(f"downloaded {spec.url} failed verification ({problem}); not cached")
    os.replace(tmp, dest)


def builtin_file(spec: CorpusFile) -> Path:
    """Find (or download and verify) one file of a built-in corpus."""
    data_dir = os.environ.get("TINYLM_DATA_DIR")
    if data_dir:
        candidate = Path(data_dir) / spec.relpath
        if candidate.is_file():
            return candidate
    cached = cache_dir() / "data" / spec.relpath
    if cached.is_file():
        if _verify(cached, spec) is None:
            return cached
        cached.unlink()  # corrupted cache entry: fetch again
    if os.environ.get("TINYLM_OFFLINE") or os.environ.get("HF_HUB_OFFLINE") == "1":
        reason = "offline mode is on (TINYLM_OFFLINE / HF_HUB_OFFLINE)"
    else:
        try:
            _download(spec, cached)
            return cached
        except ConnectionError as e:
            reason = f"download from {spec.url} failed ({e})"
    where = (f"{Path(data_dir) / spec.relpath} (under TINYLM_DATA_DIR)" if data_dir
             else f"$TINYLM_DATA_DIR/{spec.relpath} (TINYLM_DATA_DIR is not set)")
    raise TinyLMError(f"{spec.relpath} is not available: {reason}; put the file at {where} or {cached}")


def _read(path: Path, encoding: str) -> str:
    try:
        text = path.read_text(encoding=encoding)
        if "\x00" in text:
            raise TinyLMError(f"{path} looks like a binary file (it contains NUL bytes), not text")
        return text
    except UnicodeDecodeError as e:
        raise TinyLMError(
            f"{path} is not valid {encoding} text (byte {e.start}); pass --encoding (e.g. latin-1) if it is text"
        ) from None
    except LookupError:
        raise TinyLMError(f"unknown encoding {encoding!r}") from None


def read_folder(folder: Path, encoding: str, strip_gutenberg_text: bool = False) -> str:
    files = sorted(p for p in folder.rglob("*.txt") if p.is_file())
    if not files:
        raise TinyLMError(f"folder {folder} holds no .txt files")

    def read(path: Path) -> str:  # each book of a folder loses its own licence text
        text = _read(path, encoding)
        return strip_gutenberg(text, str(path)) if strip_gutenberg_text else text

    # Documents are separated by a blank line so that one file's end does not run into the next.
    return "\n\n".join(read(p).strip("\n") for p in files) + "\n"


def _builtin(name: str) -> Corpus | None:
    base, _, split = name.partition(":")
    base = BUILTIN_ALIASES.get(base, base)
    if base not in BUILTIN_CORPORA:
        return None
    files = BUILTIN_CORPORA[base]
    if split:
        if split not in files:
            raise TinyLMError(f"corpus {base} has no split {split!r}; choose one of {', '.join(files)}")
        return Corpus(name, _read(builtin_file(files[split]), "utf-8"))
    if "valid" in files:
        try:
            train = builtin_file(files["train"])
        except TinyLMError as e:
            raise TinyLMError(
                f"{e}. Offline, train on another split instead: --data {base}:valid --val-data {base}:test"
            ) from None
        return Corpus(name, _read(train, "utf-8"), _read(builtin_file(files["valid"]), "utf-8"))
    return Corpus(name, _read(builtin_file(files["train"]), "utf-8"))


# -- Project Gutenberg ---------------------------------------------------------------------------------
# Every Project Gutenberg text is framed by licence text: a header ending with a line like
#   *** START OF THE PROJECT GUTENBERG EBOOK PRIDE AND PREJUDICE ***
# and a footer starting with "*** END OF THE PROJECT GUTENBERG EBOOK ..." (older files: "THIS PROJECT",
# "EBOOK" or "E-BOOK", often preceded by a line "End of the Project Gutenberg EBook of ...").
GUTENBERG_START = r"^[ \t]*\*\*\*[ \t]*START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK[^\n]*$"
_GUTENBERG_END = (r"^[ \t]*\*\*\*[ \t]*END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK[^\n]*$",
                  r"^[ \t]*End of (?:the )?Project Gutenberg'?s?\b[^\n]*$")
GUTENBERG_URL = "https://www.gutenberg.org/cache/epub/{id}/pg{id}.txt"


def strip_gutenberg(text: str, name: str = "the text") -> str:
    """The book inside a Project Gutenberg file: what lies between its START and END marker lines (the
    licence header and footer cut off), with Windows line ends made plain."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n")
    start = re.search(GUTENBERG_START, text, re.IGNORECASE | re.MULTILINE)
    if start is None:
        raise TinyLMError(f"{name} has no Project Gutenberg '*** START OF THE PROJECT GUTENBERG EBOOK' line: "
                          f"it is not a Project Gutenberg text (drop --strip-gutenberg)")
    body = text[start.end():]
    ends = [m.start() for m in (re.search(p, body, re.IGNORECASE | re.MULTILINE) for p in _GUTENBERG_END) if m]
    body = body[: min(ends)] if ends else body  # no footer (a cut file): keep everything after the header
    return body.strip("\n") + "\n"


def gutenberg_file(book_id: str) -> CorpusFile:
    """The plain-text file of Project Gutenberg book `book_id`: looked up in $TINYLM_DATA_DIR/gutenberg/,
    then in the cache, then downloaded (checked to be a Gutenberg text before it is cached)."""
    if not book_id.isdigit():
        raise TinyLMError(f"--data gutenberg:{book_id}: a Project Gutenberg book is a number, e.g. gutenberg:1342")
    book_id = str(int(book_id))
    return CorpusFile(f"gutenberg/pg{book_id}.txt", GUTENBERG_URL.format(id=book_id), None,
                      min_bytes=1_000, max_bytes=100_000_000, contains=GUTENBERG_START)


def _gutenberg(source: str, encoding: str) -> Corpus:
    spec = gutenberg_file(source.partition(":")[2])
    try:
        path = builtin_file(spec)
    except TinyLMError as e:
        raise TinyLMError(f"{e} (the book is at {spec.url})") from None
    return Corpus(source, strip_gutenberg(_read(path, encoding), source))


def load_hf_dataset(name: str, text_column: str, split: str, config: str | None) -> str:
    """Text of a Hugging Face dataset: a hub name, a local dataset folder, or a `save_to_disk` folder."""
    try:
        import datasets
    except ImportError:
        raise TinyLMError("--data hf:... needs the `datasets` package: pip install 'tinylm[hf]'") from None
    path = Path(name)
    try:
        if path.is_dir() and any((path / f).exists() for f in ("dataset_info.json", "dataset_dict.json", "state.json")):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise TinyLMError(f"dataset {name} has no split {split!r}; it has {', '.join(ds)}")
                ds = ds[split]
        else:
            ds = datasets.load_dataset(name, config, split=split)
    except TinyLMError:
        raise
    except Exception as e:  # datasets raises many types for "not found / offline"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = " (offline: download it once online, or set HF_DATASETS_OFFLINE=1 with a cached copy)"
        raise TinyLMError(f"could not load Hugging Face dataset {name!r}: {first}{hint}") from None
    if text_column not in ds.column_names:
        raise TinyLMError(f"dataset {name} has no column {text_column!r}; columns: {', '.join(ds.column_names)}")
    return "\n".join(str(t) for t in ds[text_column]) + "\n"


def load_corpus(
    source: str,
    encoding: str = "utf-8",
    text_column: str = "text",
    hf_split: str = "train",
    hf_config: str | None = None,
    strip_gutenberg_text: bool = False,
) -> Corpus:
    """Resolve a --data value to text. Order: hf:NAME, gutenberg:ID, an existing path, a built-in corpus name.
    `strip_gutenberg_text` cuts the Project Gutenberg licence header and footer off a file (gutenberg:ID
    texts are always cut)."""
    if source.startswith("hf:"):
        return Corpus(source, load_hf_dataset(source[3:], text_column, hf_split, hf_config))
    if source.startswith("gutenberg:"):
        return _gutenberg(source, encoding)
    path = Path(source).expanduser()
    if path.is_file():
        text = _read(path, encoding)
        return Corpus(source, strip_gutenberg(text, str(path)) if strip_gutenberg_text else text)
    if path.is_dir():
        return Corpus(source, read_folder(path, encoding, strip_gutenberg_text))
    corpus = _builtin(source)
    if corpus is None:
        names = ", ".join(BUILTIN_CORPORA)
        raise TinyLMError(f"--data {source!r} is neither a file, a folder, hf:NAME, gutenberg:ID nor a built-in "
                          f"corpus ({names})")
    return corpus
