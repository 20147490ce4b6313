"""Stage 2: text <-> token ids.

Kinds (`--tokenizer`):
- char: one token per character;
- word: words (letters, digits, inner apostrophes) and single punctuation marks, plus newlines, with a
  min-frequency / top-N vocabulary and <unk>. Whitespace is lossy: spaces and tabs only separate tokens,
  and decoding puts one space between tokens and none around newlines ("Hi,  you" -> "Hi , you");
- bpe: byte-level BPE trained on the corpus (`--vocab-size`): any Unicode text round-trips exactly;
- anything else: a pretrained tokenizer of `transformers` by Hub name or local folder (AutoTokenizer).

Every tokenizer is a Hugging Face `tokenizers.Tokenizer` underneath, saved as `tokenizer.json` with a
`tokenizer_config.json` beside it, so a run directory loads with
`transformers.AutoTokenizer.from_pretrained(run_dir)` as a PreTrainedTokenizerFast, special tokens included.
tinylm itself only needs the small `tokenizers` package (fast to import); transformers is imported only to
fetch a pretrained tokenizer.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tokenizers as hf
import torch

from ..errors import TinyLMError, check_types
from ..io import write_json, write_text
from . import encoding
from .encoding import BETWEEN_WORDS, NEWLINE, EncodingStrategy

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
SPECIAL_TOKENS = [PAD, UNK, EOS]


# What byte-level decoding yields for bytes that are not text: U+FFFD for invalid UTF-8, control characters
# (but newline and tab) from the byte tokens every byte-level vocabulary holds, and code points no text
# uses (unassigned, private use, surrogates) that random bytes can spell.
_NOT_TEXT_CATEGORIES = ("Cc", "Cn", "Co", "Cs")


def _text_only(text: str) -> str:
    return "".join(c for c in text if c in "\n\t" or (c != "\ufffd"
                                                      and unicodedata.category(c) not in _NOT_TEXT_CATEGORIES))


@dataclass
class TokenizerConfig:
    """How the tokenizer is built from the training text."""

    kind: str = "char"
    """char, word, bpe (see TOKENIZER_BUILDERS), or a transformers tokenizer name or folder (e.g. gpt2)."""
    vocab_size: int | None = None
    """Upper bound on the vocabulary, special tokens included: word (default: every word kept by min_freq) and
    bpe (default 2048); a pretrained tokenizer given one is trained anew on the text to that size
    (`--tokenizer gpt2 --vocab-size 1024`); ignored by char."""
    min_freq: int = 1
    """char/word: symbols seen fewer times than this map to <unk>; bpe: rarer pairs are not merged."""

    @property
    def retrains(self) -> bool:
        """Whether this is a pretrained tokenizer trained anew on the training text (a vocab_size is given)."""
        return self.kind not in TOKENIZER_BUILDERS and self.vocab_size is not None

    def __post_init__(self) -> None:
        check_types(self)
        if self.vocab_size is not None and self.vocab_size < 1:
            raise TinyLMError(f"--vocab-size must be at least 1, got {self.vocab_size}")
        if self.min_freq < 1:
            raise TinyLMError(f"--min-freq must be at least 1, got {self.min_freq}")


def token_dtype(vocab_size: int) -> str:
    """The smallest id type that holds every id of the vocabulary: uint16, else uint32."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


class Tokenizer:
    """A thin, typed wrapper over `tokenizers.Tokenizer` with the ids tinylm needs (pad, unk, eos)."""

    def __init__(self, backend: hf.Tokenizer, kind: str, pad: str | None = PAD, unk: str | None = UNK,
                 eos: str | None = EOS, bos: str | None = None):
        self.backend = backend
        self.kind = kind
        self.pad_token, self.unk_token, self.eos_token = pad, unk, eos
        self.bos_token = bos or eos  # tinylm starts texts after <eos>; pretrained ones may have their own
        self.pad_id = backend.token_to_id(pad) if pad else None
        self.unk_id = backend.token_to_id(unk) if unk else None
        self.eos_id = backend.token_to_id(eos) if eos else None
        # Byte-level BPE can put together bytes that are no UTF-8 text (a character cut in two, an untrained
        # model's noise) or control bytes: decode(text_only=True) leaves those out (see _text_only).
        self._byte_level = isinstance(backend.decoder, hf.decoders.ByteLevel)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_tensor(self, text: str) -> torch.Tensor:
        # A long text: in parallel chunks, without one huge Encoding (~360 bytes a character) in memory.
        if len(text) > 1 << 17 and self.strategy.cuts_proven:
            # in the narrowest id type, widened once at the end: less memory traffic than int64 throughout
            arrays = [ids for _, ids in self.encode_stream([text], token_dtype(self.vocab_size))]
            return torch.from_numpy(np.concatenate(arrays).astype(np.int64)) if arrays \
                else torch.zeros(0, dtype=torch.long)
        return torch.tensor(self.encode(text), dtype=torch.long)

    @property
    def strategy(self) -> EncodingStrategy:
        """How a long text may be encoded in chunks with the ids of the whole text (see tinylm.tokenizers.encoding)."""
        return ENCODING_STRATEGIES.get(self.kind, PRETRAINED_STRATEGY)

    @property
    def learns_from_text(self) -> bool:
        """Whether the vocabulary is learned from the training text (char, word, bpe), not given (pretrained)."""
        return self.kind in TOKENIZER_BUILDERS

    def encode_stream(self, pieces: Iterable[str], dtype: np.dtype | type = np.int64
                      ) -> Iterator[tuple[str, np.ndarray]]:
        """(chunk, ids) of a text given as a stream of pieces (never held whole), cut where this tokenizer's
        ids do not change and encoded in parallel batches: the ids, joined, equal `encode` of the whole text."""
        return encoding.encode_stream(self.backend, self.strategy, pieces, np.dtype(dtype), self.unk_id, self.kind)

    def decode(self, ids: list[int] | torch.Tensor, text_only: bool = False) -> str:
        """The text of `ids`. `text_only` (generated text): with a byte-level tokenizer, bytes that are not
        UTF-8 text and control bytes other than newline and tab are left out instead of showing as U+FFFD
        or control characters; decode(encode(text)) == text holds without it, for any text."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        text = self.backend.decode([i for i in ids if i != self.pad_id], skip_special_tokens=False)
        return _text_only(text) if text_only and self._byte_level else text

    def token_text(self, token_id: int) -> str:
        """How one token reads: its decoded text, or its name for special tokens."""
        token = self.backend.id_to_token(token_id)
        if token in (self.pad_token, self.unk_token, self.eos_token, self.bos_token):
            return token
        return self.backend.decode([token_id], skip_special_tokens=False)

    def unknown_symbols(self, text: str) -> list[str]:
        """The distinct pieces of `text` that encode to <unk>, in order of first appearance."""
        if self.unk_id is None:
            return []
        encoding = self.backend.encode(text, add_special_tokens=False)
        seen: dict[str, None] = {}
        for token_id, (start, end) in zip(encoding.ids, encoding.offsets):
            if token_id == self.unk_id and text[start:end] != self.unk_token:
                seen.setdefault(text[start:end], None)
        return list(seen)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        write_text(folder / "tokenizer.json", self.backend.to_str(pretty=True))
        specials = {
            name: token
            for name, token in (("pad_token", self.pad_token), ("unk_token", self.unk_token),
                                ("eos_token", self.eos_token), ("bos_token", self.bos_token))
            if token
        }
        write_json(folder / "special_tokens_map.json", specials)
        write_json(folder / "tokenizer_config.json", {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "clean_up_tokenization_spaces": False,
            "add_prefix_space": False,
            "tinylm_kind": self.kind,
            **specials,
        })

    @classmethod
    def load(cls, folder: str | Path) -> Tokenizer:
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise TinyLMError(f"{folder} has no tokenizer.json")
        try:
            backend = hf.Tokenizer.from_file(str(path))
        except Exception as e:  # noqa: BLE001 - the Rust side raises plain Exceptions for malformed JSON
            raise TinyLMError(f"{path} is not a valid tokenizer file ({str(e).splitlines()[0]})") from None
        meta, meta_path = {}, folder / "tokenizer_config.json"
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (ValueError, RecursionError) as e:
                raise TinyLMError(f"{meta_path} is damaged (not valid JSON: {str(e)[:80]})") from None
            if not isinstance(meta, dict):
                raise TinyLMError(f"{meta_path} is damaged (not a JSON object)")
        return cls(backend, meta.get("tinylm_kind", "char"), meta.get("pad_token"), meta.get("unk_token"),
                   meta.get("eos_token"), meta.get("bos_token"))


# -- builders ---------------------------------------------------------------------------------------
def build_char(config: TokenizerConfig, text: str) -> Tokenizer:
    """One token per character seen in the training text (at least min_freq times), plus specials."""
    return build_char_from_counts(config, Counter(text))


def build_char_from_counts(config: TokenizerConfig, counts: dict[str, int]) -> Tokenizer:
    """build_char from character counts, which a large corpus can gather chunk by chunk (Counter.update)."""
    chars = sorted(ch for ch, n in counts.items() if n >= config.min_freq)
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + chars)}
    backend = hf.Tokenizer(hf.models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = hf.pre_tokenizers.Split(hf.Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = hf.decoders.Fuse()
    backend.add_special_tokens(SPECIAL_TOKENS)
    return Tokenizer(backend, "char")


# Words with inner apostrophes (don't, o'er), single punctuation marks, and newlines; other whitespace
# only separates tokens (removed by the first split).
WORD_PATTERN = r"\w+(?:['\u2019]\w+)*|[^\w\s]|\n"


def word_pre_tokenizer() -> hf.pre_tokenizers.PreTokenizer:
    """Word tokens of WORD_PATTERN; spaces and tabs only separate them (the encoder and the counting share it)."""
    return hf.pre_tokenizers.Sequence([
        hf.pre_tokenizers.Split(hf.Regex(r"[^\S\n]+"), behavior="removed"),
        hf.pre_tokenizers.Split(hf.Regex(WORD_PATTERN), behavior="isolated"),
    ])


def count_words(text: str, counts: Counter | None = None) -> Counter:
    """Add the word tokens of `text` to `counts`. Words never span a newline, so a text cut after
    newlines counts the same piece by piece as whole."""
    counts = Counter() if counts is None else counts
    counts.update(word for word, _ in word_pre_tokenizer().pre_tokenize_str(text))
    return counts


def build_word(config: TokenizerConfig, text: str) -> Tokenizer:
    """Words and punctuation of the training text seen at least min_freq times (the vocab_size most
    frequent when given, specials included), plus specials; the rest map to <unk>."""
    return build_word_from_counts(config, count_words(text))


def build_word_from_counts(config: TokenizerConfig, counts: dict[str, int]) -> Tokenizer:
    """build_word from word counts (count_words), which a large corpus can gather chunk by chunk."""
    pre_tokenizer = word_pre_tokenizer()
    words = sorted((w for w, n in counts.items() if n >= config.min_freq), key=lambda w: (-counts[w], w))
    if config.vocab_size is not None:
        if config.vocab_size <= len(SPECIAL_TOKENS):
            raise TinyLMError(f"--vocab-size must be above {len(SPECIAL_TOKENS)} (the special tokens), "
                              f"got {config.vocab_size}")
        words = words[: config.vocab_size - len(SPECIAL_TOKENS)]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + words)}
    backend = hf.Tokenizer(hf.models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizer
    # One space between tokens (WordPiece's join; "##" never starts a word token), none around newlines.
    backend.decoder = hf.decoders.Sequence([
        hf.decoders.WordPiece(prefix="##", cleanup=False),
        hf.decoders.Fuse(),
        hf.decoders.Replace(hf.Regex(r" ?\n ?"), "\n"),
    ])
    backend.add_special_tokens(SPECIAL_TOKENS)
    return Tokenizer(backend, "word")


BPE_DEFAULT_VOCAB = 2048
BPE_MAX_WORD_CHARS = 256
"""BPE learns merges inside words; a longer run without a space (one character repeated, a base64 blob) is
learned from in pieces of this length. The tokenizers trainer takes time quadratic in a word's length (one
repeated character: 100,000 of them 6 s, 400,000 69 s), so bounded words keep training linear in the corpus;
encoding is not affected."""
_LONG_RUN = re.compile(rf"\S{{{BPE_MAX_WORD_CHARS}}}")


def bounded_words(texts: Iterable[str]) -> Iterator[str]:
    """The texts as pieces in which no run of non-space characters is longer than BPE_MAX_WORD_CHARS (a longer
    run is cut after each BPE_MAX_WORD_CHARS characters; the BPE trainer reads each piece on its own)."""
    for text in texts:
        start = 0
        for match in _LONG_RUN.finditer(text):
            yield text[start:match.end()]
            start = match.end()
        yield text[start:]


def build_bpe(config: TokenizerConfig, text: str) -> Tokenizer:
    """Byte-level BPE (GPT-2's scheme) trained on the text: the 256 byte symbols guarantee that any
    Unicode text encodes without <unk> and decodes back exactly."""
    return build_bpe_from_iterator(config, [text])


def build_bpe_from_iterator(config: TokenizerConfig, texts: Iterable[str]) -> Tokenizer:
    """build_bpe over pieces of the text (the trainer counts words across them, so pieces cut where the
    byte-level pre-tokenizer cuts anyway give the same merges as the whole text)."""
    alphabet = hf.pre_tokenizers.ByteLevel.alphabet()
    vocab_size = config.vocab_size or BPE_DEFAULT_VOCAB
    if vocab_size < len(alphabet) + len(SPECIAL_TOKENS):
        raise TinyLMError(f"--vocab-size for bpe must be at least {len(alphabet) + len(SPECIAL_TOKENS)} "
                          f"(256 bytes + special tokens), got {vocab_size}")
    backend = hf.Tokenizer(hf.models.BPE())
    backend.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = hf.decoders.ByteLevel()
    backend.post_processor = hf.processors.ByteLevel(trim_offsets=False)
    trainer = hf.trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=config.min_freq,
                                     special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet,
                                     show_progress=False)
    backend.train_from_iterator(bounded_words(texts), trainer)
    return Tokenizer(backend, "bpe")


def build_pretrained(config: TokenizerConfig, text: str) -> Tokenizer:
    """A transformers tokenizer by Hub name or local folder: as it is, or, with `vocab_size`, trained anew on
    the text (see pretrained_tokenizer)."""
    return pretrained_tokenizer(config, [text])


def pretrained_tokenizer(config: TokenizerConfig, texts: Iterable[str]) -> Tokenizer:
    """A transformers tokenizer by Hub name or local folder. With `config.vocab_size` it is trained anew on
    `texts` through transformers' own `train_new_from_iterator`: the same pipeline (GPT-2's byte-level BPE for
    gpt2) and special tokens, a vocabulary sized for a small model (`--tokenizer gpt2 --vocab-size 1024`); the
    texts are read only then."""
    name = config.kind
    hint = (f"unknown tokenizer {name!r}: not one of {', '.join(TOKENIZER_BUILDERS)}, and not a folder or "
            f"Hugging Face tokenizer name that transformers can load")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise TinyLMError(f"{hint} (transformers is not installed: pip install 'tinylm[hf]')") from None
    try:
        auto = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:  # not on the Hub, offline without a cached copy, no tokenizer files
        raise TinyLMError(f"{hint} ({str(e).strip().splitlines()[0]})") from None
    if not auto.is_fast:
        raise TinyLMError(f"tokenizer {name!r} has no fast (tokenizer.json) version; tinylm needs one")
    if config.vocab_size is not None:
        auto = _retrained(auto, texts, config.vocab_size, name)
    backend = auto.backend_tokenizer
    backend.no_truncation()  # tinylm cuts windows itself
    backend.no_padding()
    return Tokenizer(backend, name, pad=auto.pad_token, unk=auto.unk_token, eos=auto.eos_token,
                     bos=auto.bos_token)


def _retrained(auto, texts: Iterable[str], vocab_size: int, name: str):
    """`auto` trained anew on the texts (words of bounded length, as for tinylm's BPE) to `vocab_size` tokens."""
    retrained = auto.train_new_from_iterator(bounded_words(texts), vocab_size)
    if len(retrained) > vocab_size:  # a byte-level tokenizer keeps its 256 byte symbols whatever is asked
        raise TinyLMError(f"--vocab-size {vocab_size} is smaller than the base alphabet of {name!r} "
                          f"({len(retrained)} tokens with its special tokens); ask for more")
    return retrained


TOKENIZER_BUILDERS: dict[str, Callable[[TokenizerConfig, str], Tokenizer]] = {
    "char": build_char, "word": build_word, "bpe": build_bpe,
}


def build_tokenizer(config: TokenizerConfig, text: str) -> Tokenizer:
    """A tokenizer of a registered kind trained on `text`, or else a pretrained one named by config.kind."""
    return TOKENIZER_BUILDERS.get(config.kind, build_pretrained)(config, text)


def count_chars(pieces: Iterable[str]) -> Counter:
    """Counter(text) of the text the pieces make, ten times faster: numpy counts the code points."""
    counts: Counter = Counter()
    for piece in pieces:
        try:
            points = np.frombuffer(piece.encode("utf-32-le"), dtype="<u4")
        except UnicodeEncodeError:  # lone surrogates
            counts.update(piece)
            continue
        bins = np.bincount(points)
        for point in np.flatnonzero(bins).tolist():
            counts[chr(point)] += int(bins[point])
    return counts


def build_tokenizer_from_stream(config: TokenizerConfig, pieces: Iterable[str]) -> Tokenizer:
    """build_tokenizer on a text given as a stream of pieces, never held whole (tinylm prepare): the same
    tokenizer as on the joined text. Words and BPE's pre-tokens are counted over chunks cut where the kind's
    encoding may cut (no token spans such a cut); a pretrained tokenizer reads nothing."""
    if config.kind == "char":
        return build_char_from_counts(config, count_chars(pieces))
    if config.kind == "word":
        counts: Counter = Counter()
        for chunk in encoding.chunks(pieces, ENCODING_STRATEGIES["word"].cut):
            count_words(chunk, counts)
        return build_word_from_counts(config, counts)
    if config.kind == "bpe":
        return build_bpe_from_iterator(config, encoding.chunks(pieces, ENCODING_STRATEGIES["bpe"].cut))
    return pretrained_tokenizer(config, encoding.chunks(pieces, PRETRAINED_STRATEGY.cut))


# How a long text of each kind is encoded chunk by chunk (Tokenizer.strategy; see tinylm.tokenizers.encoding).
ENCODING_STRATEGIES: dict[str, EncodingStrategy] = {
    "char": EncodingStrategy(cut=NEWLINE, char_table=True),  # no special token's text holds a newline
    "word": EncodingStrategy(cut=NEWLINE),  # words never span a newline
    "bpe": EncodingStrategy(cut=BETWEEN_WORDS),  # a byte-level pre-token may hold a newline: "\n " or " \n"
}
PRETRAINED_STRATEGY = EncodingStrategy(cut=BETWEEN_WORDS, cuts_proven=False)
"""A pretrained tokenizer may read the start of a text specially (a prefix space): its cuts are checked."""
