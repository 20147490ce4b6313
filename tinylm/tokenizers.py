"""Stage 2: text <-> token ids.

Every tokenizer is a Hugging Face `tokenizers.Tokenizer` underneath, saved as `tokenizer.json` with a
`tokenizer_config.json` beside it, so a run directory loads with
`transformers.AutoTokenizer.from_pretrained(run_dir)` as a PreTrainedTokenizerFast, special tokens included.
tinylm itself only needs the small `tokenizers` package (fast to import, no transformers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import tokenizers as hf
import torch

from .errors import TinyLMError
from .io import write_json, write_text

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
SPECIAL_TOKENS = [PAD, UNK, EOS]


@dataclass
class TokenizerConfig:
    """How the tokenizer is built from the training text."""

    kind: str = "char"
    """char (one token per character); more kinds are registered in TOKENIZER_BUILDERS."""
    vocab_size: int | None = None
    """Upper bound on the vocabulary for learned tokenizers (ignored by char)."""
    min_freq: int = 1
    """Symbols seen fewer times than this in the training text map to <unk>."""


class Tokenizer:
    """A thin, typed wrapper over `tokenizers.Tokenizer` with the ids tinylm needs (pad, unk, eos)."""

    def __init__(self, backend: hf.Tokenizer, kind: str, pad: str | None = PAD, unk: str | None = UNK,
                 eos: str | None = EOS):
        self.backend = backend
        self.kind = kind
        self.pad_token, self.unk_token, self.eos_token = pad, unk, eos
        self.pad_id = backend.token_to_id(pad) if pad else None
        self.unk_id = backend.token_to_id(unk) if unk else None
        self.eos_id = backend.token_to_id(eos) if eos else None

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_tensor(self, text: str) -> torch.Tensor:
        return torch.tensor(self.encode(text), dtype=torch.long)

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self.backend.decode([i for i in ids if i != self.pad_id], skip_special_tokens=False)

    def token_text(self, token_id: int) -> str:
        """How one token reads: its decoded text, or its name for special tokens."""
        token = self.backend.id_to_token(token_id)
        if token in (self.pad_token, self.unk_token, self.eos_token):
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
                                ("eos_token", self.eos_token), ("bos_token", self.eos_token))
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
    def load(cls, folder: str | Path) -> "Tokenizer":
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise TinyLMError(f"{folder} has no tokenizer.json")
        try:
            backend = hf.Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust side raises plain Exceptions for malformed JSON
            raise TinyLMError(f"{path} is not a valid tokenizer file ({str(e).splitlines()[0]})") from None
        meta = {}
        if (folder / "tokenizer_config.json").is_file():
            meta = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        return cls(backend, meta.get("tinylm_kind", "char"), meta.get("pad_token"), meta.get("unk_token"),
                   meta.get("eos_token"))


# -- builders ---------------------------------------------------------------------------------------
def build_char(config: TokenizerConfig, text: str) -> Tokenizer:
    """One token per character seen in the training text (at least min_freq times), plus specials."""
    counts: dict[str, int] = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    chars = sorted(ch for ch, n in counts.items() if n >= config.min_freq)
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + chars)}
    backend = hf.Tokenizer(hf.models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = hf.pre_tokenizers.Split(hf.Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = hf.decoders.Fuse()
    backend.add_special_tokens(SPECIAL_TOKENS)
    return Tokenizer(backend, "char")


TOKENIZER_BUILDERS: dict[str, Callable[[TokenizerConfig, str], Tokenizer]] = {"char": build_char}


def build_tokenizer(config: TokenizerConfig, text: str) -> Tokenizer:
    builder = TOKENIZER_BUILDERS.get(config.kind)
    if builder is None:
        raise TinyLMError(f"unknown tokenizer {config.kind!r}; choose one of {', '.join(TOKENIZER_BUILDERS)}")
    return builder(config, text)
