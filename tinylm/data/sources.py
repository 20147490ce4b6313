"""Where text comes from: a file, a folder of .txt files, a built-in corpus, a Project Gutenberg book, or a
Hugging Face dataset; and how it is read: whole (`load_corpus`), or as a stream that never holds it whole
(`find_source(...).train.stream()`, `TextSource.split_streams`: tinylm prepare), the two giving the same text.

Built-in corpora resolve, in order, from `$TINYLM_DATA_DIR` (a folder laid out like `shakespeare/`'s
`tinyshakespeare/input.txt`), the user cache (`$TINYLM_CACHE_DIR`, default `~/.cache/tinylm`), and a
download from the canonical URL that is verified before it is cached. Offline with no copy, the error
says exactly where to put the file.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import re
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import TinyLMError
from ..machine.store import cache_dir


@dataclass(frozen=True)
class CorpusFile:
    relpath: str  # path under TINYLM_DATA_DIR / the cache
    url: str
    sha256: str | None  # pinned checksum; None where no checksum is published
    min_bytes: int = 0  # plausibility checks for files without a pinned checksum
    max_bytes: int = 1 << 40
    starts_with: str = ""
    contains: str = ""  # a regular expression (any case) that must match near the beginning of the file
    md5: str | None = None  # a published MD5 (with `rows`: how a CSV download is checked)
    rows: int | None = None  # CSV rows the file must hold
    text_of: Callable[[str], str] | None = None  # the text tinylm reads from the file's content (a CSV's titles)
    build: Callable[[Path], None] | None = None  # writes the file from other downloads instead of `url`


_WT2 = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/"
_AG_NEWS = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/"


def ag_news_titles(csv_text: str) -> str:
    """The titles of AG News rows ("class","title","description"), one per line: a title's escaped line breaks
    (a backslash and n) become spaces, so each title stays one line."""
    titles = (row[1].replace("\\n", " ").strip() for row in csv.reader(io.StringIO(csv_text)) if len(row) >= 2)
    return "\n".join(title for title in titles if title) + "\n"


def _build_faust(dest: Path) -> None:
    """Goethe's Faust I and II from Project Gutenberg (books 2229 and 2230), each without its licence text,
    joined by a blank line: what $TINYLM_DATA_DIR/faust/input.txt holds when there is no copy at hand."""
    plays = []
    for book in ("2229", "2230"):
        path = builtin_file(gutenberg_file(book))
        plays.append(strip_gutenberg(path.read_text(encoding="utf-8"), f"gutenberg:{book}").strip("\n"))
    dest.write_text(nfc("\n\n".join(plays) + "\n"), encoding="utf-8")

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
    # AG News (Zhang, Zhao and LeCun 2015): the titles, one per line. The CSV files carry no published sha256:
    # a download is checked by the MD5 and row count torchtext lists.
    "agnews": {
        "train": CorpusFile("ag_news/train.csv", _AG_NEWS + "train.csv", None, md5="b1a00f826fdfbd249f79597b59e1dc12",
                            rows=120_000, text_of=ag_news_titles),
        "test": CorpusFile("ag_news/test.csv", _AG_NEWS + "test.csv", None, md5="d52ea96a97a2d943681189a97654912d",
                           rows=7_600, text_of=ag_news_titles),
    },
    # Goethe's Faust I and II, German: the shared copy, or built from Project Gutenberg 2229 + 2230 when online
    # (a build is checked for its size and title; the shared copy's sha256 is its own).
    "faust": {
        "train": CorpusFile("faust/input.txt", "https://www.gutenberg.org/ebooks/2229 + 2230", None, 300_000,
                            1_000_000, contains=r"Faust", build=_build_faust),
    },
}
BUILTIN_ALIASES = {"tinyshakespeare": "shakespeare", "tiny-shakespeare": "shakespeare", "wikitext-2": "wikitext2",
                   "ag_news": "agnews", "ag-news": "agnews"}
VALIDATION_SPLITS = {"agnews": "test"}
"""The split a corpus validates on when it is not "valid" (its other splits are named NAME:SPLIT); a corpus with
neither is cut by --val-fraction."""
OFFLINE_SPLITS = {"agnews": "--data agnews:test"}
"""What to train on offline when the training split is not at hand (the shared data holds only these)."""
LINE_CORPORA = frozenset({"agnews"})
"""Corpora of one sample per line: they train in line mode unless --no-lines says otherwise."""


def is_line_corpus(source: str | None) -> bool:
    """Whether `source` names a built-in corpus of one sample per line (AG News titles)."""
    if not isinstance(source, str):
        return False
    base = source.partition(":")[0]
    return BUILTIN_ALIASES.get(base, base) in LINE_CORPORA and not Path(source).expanduser().exists()


@dataclass
class Corpus:
    """Text of one source: `train` and, when the source has its own validation split, `val`."""

    name: str
    train: str
    val: str | None = None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _csv_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return sum(1 for _ in csv.reader(f))


def _verify(path: Path, spec: CorpusFile) -> str | None:
    """Return why `path` is not the expected file, or None if it is."""
    if spec.md5 is not None:
        got = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        if got != spec.md5:
            return f"md5 {got} != expected {spec.md5}"
        rows = _csv_rows(path)
        return None if spec.rows is None or rows == spec.rows else f"{rows:,} rows, expected {spec.rows:,}"
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
        if spec.build is not None:
            spec.build(tmp)
        else:
            with urllib.request.urlopen(spec.url, timeout=timeout) as response, open(tmp, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        tmp.unlink(missing_ok=True)
        raise ConnectionError(str(e)) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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


# -- reading text, whole or as a stream --------------------------------------------------------------------
READ_BYTES = 1 << 20  # raw bytes read at a time
Tick = Callable[[int], None]  # progress: bytes just read


def _no_tick(nbytes: int) -> None:
    pass


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


def _string_pieces(text: str, tick: Tick) -> Iterator[str]:
    for i in range(0, len(text), READ_BYTES):
        piece = text[i : i + READ_BYTES]
        tick(len(piece.encode("utf-8")))
        yield piece


def _joined(documents: Iterable[Iterator[str]]) -> Iterator[str]:
    """What `"\n\n".join(text.strip("\n") for text in documents) + "\n"` makes, streamed: trailing newlines
    are held back until text follows. (A blank line between documents: one's end does not run into the next.)"""
    for index, pieces in enumerate(documents):
        if index:
            yield "\n\n"
        started, held = False, 0
        for piece in pieces:
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


def nfc(text: str) -> str:
    """`text` in Unicode NFC: a letter and its combining accent ("u" + U+0308) become one character ("ü"), so
    the same word is the same tokens however an editor or a keyboard composed it."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def nfc_pieces(pieces: Iterable[str]) -> Iterator[str]:
    """The pieces of a text in NFC, as `nfc` of the joined text gives it: the last two starters of a piece (and
    the marks after them) wait for the next one, where a combining mark may follow."""
    held = ""
    for piece in pieces:
        text = held + piece
        starters = [i for i in range(len(text) - 1, max(-1, len(text) - 64), -1)
                    if not unicodedata.combining(text[i])][:2]
        cut = starters[-1] if len(starters) == 2 else 0
        held = text[cut:]
        if cut:
            yield nfc(text[:cut])
    if held:
        yield nfc(held)


@dataclass(frozen=True)
class Document:
    """One text of a source: a file read as it is or with its Project Gutenberg licence text cut off (which needs
    the whole file), or a text already in memory (a dataset's rows)."""

    name: str
    path: Path | None = None
    text: str | None = None
    strip_gutenberg: bool = False
    text_of: Callable[[str], str] | None = None  # the text to read from the file's whole content (a CSV's titles)

    @property
    def nbytes(self) -> int:
        return self.path.stat().st_size if self.path is not None else len(self.text.encode("utf-8"))

    def stream(self, encoding: str, tick: Tick) -> Iterator[str]:
        if self.path is None:
            yield from _string_pieces(self.text, tick)
        elif self.strip_gutenberg or self.text_of:  # these read the whole text (marker lines, CSV rows)
            text = "".join(_file_pieces(self.path, encoding, tick))
            text = strip_gutenberg(text, self.name) if self.strip_gutenberg else text
            yield from _string_pieces(self.text_of(text) if self.text_of else text, _no_tick)
        else:
            yield from _file_pieces(self.path, encoding, tick)


@dataclass(frozen=True)
class TextPart:
    """The text of one split of a source: a document, or a folder's documents joined by blank lines."""

    documents: tuple[Document, ...]
    encoding: str = "utf-8"
    folder: bool = False

    @property
    def nbytes(self) -> int:
        """Bytes one pass reads."""
        return sum(document.nbytes for document in self.documents)

    def stream(self, tick: Tick = _no_tick) -> Iterator[str]:
        """The text, READ_BYTES at a time (a stream never holds a file whole), in Unicode NFC."""
        streams = (document.stream(self.encoding, tick) for document in self.documents)
        return nfc_pieces(_joined(streams) if self.folder else next(streams))

    def read(self) -> str:
        return "".join(self.stream())


def check_val_fraction(val_fraction: float) -> None:
    if not 0.0 <= val_fraction < 1.0:
        raise TinyLMError(f"--val-fraction must be in [0, 1), got {val_fraction}")


def validation_cut(length: int, val_fraction: float) -> int:
    """Where a text of `length` characters splits when its last `val_fraction` validates (char-rnn's convention)."""
    check_val_fraction(val_fraction)
    return int(length * (1.0 - val_fraction))


def _cut_streams(pieces: Iterator[str], cut: int) -> tuple[Iterator[str], Iterator[str]]:
    """The pieces before character `cut` and those after it: two streams of one pass, the first read first."""
    rest: list[str] = []

    def before() -> Iterator[str]:
        pos = 0
        for piece in pieces:
            if pos + len(piece) <= cut:
                pos += len(piece)
                yield piece
                continue
            if cut > pos:
                yield piece[: cut - pos]
            rest.append(piece[cut - pos :])
            return  # stop reading at the cut

    def after() -> Iterator[str]:
        yield from rest
        yield from pieces

    return before(), after()


@dataclass(frozen=True)
class TextSource:
    """A data source found, not yet read: its text, and the source's own validation text when it has one (else
    the validation text is the tail of `train`: see `validation_cut`). `read()` holds it whole in memory; the
    streams (`TextPart.stream`, `split_streams`) never do (tinylm prepare)."""

    name: str
    train: TextPart
    val: TextPart | None = None

    @property
    def nbytes(self) -> int:
        """Bytes one pass over the source reads."""
        return self.train.nbytes + (self.val.nbytes if self.val else 0)

    def read(self) -> Corpus:
        return Corpus(self.name, self.train.read(), None if self.val is None else self.val.read())

    def fraction_cut(self, val_fraction: float, tick: Tick = _no_tick) -> int:
        """One pass over the text: the character where its last `val_fraction` starts (`validation_cut`). A
        blank training or validation part is refused now, before any work is done on the text."""
        check_val_fraction(val_fraction)  # before the pass
        chars, first, last = 0, None, -1
        for piece in self.train.stream(tick):
            if not piece.isspace():  # where the non-blank text starts and ends
                first = chars + len(piece) - len(piece.lstrip()) if first is None else first
                last = chars + len(piece.rstrip()) - 1
            chars += len(piece)
        cut = validation_cut(chars, val_fraction)
        if first is None or first >= cut:
            raise TinyLMError(f"the training text of {self.name!r} is empty (or only whitespace)")
        if last < cut:
            raise TinyLMError(f"the validation split of {self.name!r} is empty: raise --val-fraction")
        return cut

    def split_streams(self, cut: int | None, tick: Tick = _no_tick) -> tuple[Iterator[str], Iterator[str]]:
        """(training text, validation text) as streams of one pass: with `cut` (`fraction_cut`), the text before
        and after that character, else the source's own validation text. Read the training stream first."""
        if cut is not None:
            return _cut_streams(self.train.stream(tick), cut)
        if self.val is None:
            raise ValueError(f"{self.name} has no validation text of its own: give the cut")
        return self.train.stream(tick), self.val.stream(tick)


def _file(path: Path, encoding: str = "utf-8", strip_gutenberg_text: bool = False, name: str = "",
          text_of: Callable[[str], str] | None = None) -> TextPart:
    return TextPart((Document(name or str(path), path, strip_gutenberg=strip_gutenberg_text, text_of=text_of),),
                    encoding)


def _builtin_part(spec: CorpusFile) -> TextPart:
    return _file(builtin_file(spec), text_of=spec.text_of)


def _folder(folder: Path, encoding: str, strip_gutenberg_text: bool = False) -> TextPart:
    """The .txt files under `folder` (sorted, subfolders too), joined by blank lines; each book of a folder
    loses its own licence text with `strip_gutenberg_text`."""
    files = sorted(p for p in folder.rglob("*.txt") if p.is_file())
    if not files:
        raise TinyLMError(f"folder {folder} holds no .txt files")
    return TextPart(tuple(Document(str(p), p, strip_gutenberg=strip_gutenberg_text) for p in files), encoding,
                    folder=True)


def _builtin(name: str) -> TextSource | None:
    base, _, split = name.partition(":")
    base = BUILTIN_ALIASES.get(base, base)
    if base not in BUILTIN_CORPORA:
        return None
    files = BUILTIN_CORPORA[base]
    if split:
        if split not in files:
            raise TinyLMError(f"corpus {base} has no split {split!r}; choose one of {', '.join(files)}")
        return TextSource(name, _builtin_part(files[split]))
    validation = VALIDATION_SPLITS.get(base, "valid")
    if validation in files:
        try:
            train = _builtin_part(files["train"])
        except TinyLMError as e:
            other = OFFLINE_SPLITS.get(base, f"--data {base}:valid --val-data {base}:test")
            raise TinyLMError(f"{e}. Offline, train on another split instead: {other}") from None
        return TextSource(name, train, _builtin_part(files[validation]))
    return TextSource(name, _builtin_part(files["train"]))


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
    if not re.fullmatch(r"[0-9]{1,9}", book_id):  # ASCII digits: str.isdigit() takes "²", which int() refuses
        raise TinyLMError(f"--data gutenberg:{book_id}: a Project Gutenberg book is a number, e.g. gutenberg:1342")
    book_id = str(int(book_id))
    return CorpusFile(f"gutenberg/pg{book_id}.txt", GUTENBERG_URL.format(id=book_id), None,
                      min_bytes=1_000, max_bytes=100_000_000, contains=GUTENBERG_START)


def _gutenberg(source: str, encoding: str) -> TextSource:
    spec = gutenberg_file(source.partition(":")[2])
    try:
        path = builtin_file(spec)
    except TinyLMError as e:
        raise TinyLMError(f"{e} (the book is at {spec.url})") from None
    return TextSource(source, _file(path, encoding, strip_gutenberg_text=True, name=source))


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


def find_source(
    source: str,
    encoding: str = "utf-8",
    text_column: str = "text",
    hf_split: str = "train",
    hf_config: str | None = None,
    strip_gutenberg_text: bool = False,
) -> TextSource:
    """Find a --data value's text without reading it (a dataset is loaded). Order: hf:NAME, gutenberg:ID, an
    existing path, a built-in corpus name. `strip_gutenberg_text` cuts the Project Gutenberg licence header and
    footer off a file (gutenberg:ID texts are always cut)."""
    if source.startswith("hf:"):
        text = load_hf_dataset(source[3:], text_column, hf_split, hf_config)
        return TextSource(source, TextPart((Document(source, text=text),)))
    if source.startswith("gutenberg:"):
        return _gutenberg(source, encoding)
    path = Path(source).expanduser()
    if path.is_file():
        return TextSource(source, _file(path, encoding, strip_gutenberg_text))
    if path.is_dir():
        return TextSource(source, _folder(path, encoding, strip_gutenberg_text))
    found = _builtin(source)
    if found is None:
        names = ", ".join(BUILTIN_CORPORA)
        raise TinyLMError(f"--data {source!r} is neither a file, a folder, hf:NAME, gutenberg:ID nor a built-in "
                          f"corpus ({names})")
    return found


def load_corpus(source: str, *args, **kwargs) -> Corpus:
    """A --data value's text, read whole (the arguments of `find_source`)."""
    return find_source(source, *args, **kwargs).read()
