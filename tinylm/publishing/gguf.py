"""A GPT run -> one GGUF file that llama.cpp (and what is built on it: llama-cpp-python, Ollama, LM Studio) runs.

    tinylm export runs/gpt exports/gpt --format gguf --outtype q8_0     # -> exports/gpt/model.gguf

Written with the `gguf` package (the writer of llama.cpp's own converter), straight from the run: no
transformers export in between. The weights' layout is tinylm.models.gguf_file's; this module adds the
tokenizer, written as llama.cpp's GPT-2 tokenizer (`tokenizer.ggml.model = gpt2`: byte-level BPE with GPT-2's
pre-tokenizer), which reproduces tinylm's ids exactly:
- bpe (byte-level, GPT-2's scheme): the vocabulary and merges as they are;
- char: each character's token is its byte-level spelling ("ä" is the two bytes C3 A4, spelled "Ã¤"), and
  merges join the bytes of each character and nothing else, so every character the vocabulary holds
  becomes its one token, umlauts and emoji included. GPT-2's pre-tokenizer only splits text between
  characters, so it changes nothing. A character the vocabulary lacks is <unk> in tinylm, but llama.cpp
  has no unknown token for byte-level vocabularies and leaves it out.
The special tokens (<pad>, <unk>, <eos>) are control tokens; <eos> ends generation. Word tokenizers have no
such form and are refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from .._version import __version__
from ..errors import TinyLMError
from ..io import write_text
from ..loading import LoadedModel
from ..models.gguf_file import GGUFVocabulary, write_gguf
from .export import check_gpt2_shaped


def byte_spelling(text: str) -> str:
    """`text` spelled the way byte-level BPE spells it: one printable character per UTF-8 byte."""
    return "".join(BYTE_TO_CHAR[b] for b in text.encode("utf-8"))


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from bytes to the printable characters byte-level BPE spells them with: printable
    Latin-1 bytes stand for themselves, the others are shifted past 255 (256 + n, in byte order). It is
    a fixed part of the scheme (GPT-2's encoder.py); the tokenizers library does not expose it."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + shifted)
            shifted += 1
    return table


BYTE_TO_CHAR = _bytes_to_unicode()


def char_vocabulary(tokens: list[str], specials: set[str]) -> tuple[list[str], list[str]]:
    """A char tokenizer's vocabulary (token strings by id) as a byte-level BPE one: each character spelled
    byte by byte, and the merges that join each character's bytes, shortest prefixes first (a character of
    n bytes needs n - 1 merges; characters sharing a prefix share its merges)."""
    spelled, merges, seen = [], [], set()
    for token in tokens:
        if token in specials:
            spelled.append(token)
            continue
        pieces = [BYTE_TO_CHAR[b] for b in token.encode("utf-8")]
        spelled.append("".join(pieces))
        for n in range(1, len(pieces)):
            merge = ("".join(pieces[:n]), pieces[n])
            if merge not in seen:
                seen.add(merge)
                merges.append(merge)
    merges.sort(key=lambda m: len(m[0]))  # a prefix is merged before anything that extends it
    return spelled, [f"{left} {right}" for left, right in merges]


def _tokens_by_id(backend) -> list[str]:
    vocab = backend.get_vocab(with_added_tokens=True)
    tokens = [""] * len(vocab)
    for token, i in vocab.items():
        tokens[i] = token
    if "" in tokens:
        raise TinyLMError("the run's tokenizer has gaps in its ids; --format gguf needs ids 0..N-1")
    return tokens


def gguf_vocabulary(run: LoadedModel) -> GGUFVocabulary:
    """The run's tokenizer as llama.cpp's GPT-2 tokenizer reads it."""
    import gguf
    import tokenizers as hf

    tokenizer, backend = run.tokenizer, run.tokenizer.backend
    specials = {t for t in (tokenizer.pad_token, tokenizer.unk_token, tokenizer.eos_token, tokenizer.bos_token)
                if t} | {t.content for t in backend.get_added_tokens_decoder().values() if t.special}
    tokens = _tokens_by_id(backend)
    if tokenizer.kind == "char" and isinstance(backend.model, hf.models.WordLevel):
        tokens, merges = char_vocabulary(tokens, specials)
    elif isinstance(backend.model, hf.models.BPE) and isinstance(backend.pre_tokenizer, hf.pre_tokenizers.ByteLevel):
        merges = [m if isinstance(m, str) else " ".join(m) for m in json.loads(backend.to_str())["model"]["merges"]]
    else:
        raise TinyLMError(f"--format gguf writes char and byte-level BPE tokenizers (llama.cpp's GPT-2 "
                          f"tokenizer); {run.run_dir} has a {tokenizer.kind} tokenizer")
    types = [gguf.TokenType.UNKNOWN if t == tokenizer.unk_token else gguf.TokenType.CONTROL if t in specials
             else gguf.TokenType.NORMAL for t in tokens]
    ids = {"eos": tokenizer.eos_id, "bos": backend.token_to_id(tokenizer.bos_token) if tokenizer.bos_token else None,
           "unk": tokenizer.unk_id, "pad": tokenizer.pad_id}
    return GGUFVocabulary(tokens, merges, [int(t) for t in types], {k: v for k, v in ids.items() if v is not None})


def export_gguf(run: LoadedModel, out: Path, outtype: str = "f32") -> None:
    """Write `run` (a GPT run built like GPT-2) as `out/model.gguf`, with a README.md beside it."""
    model = check_gpt2_shaped(run, "gguf")
    vocabulary = gguf_vocabulary(run)
    metadata = {
        "general.name": Path(run.run_dir).name,
        "general.description": f"{model.describe()} trained with tinylm {__version__} ({run.tokenizer.kind} "
                               f"tokenizer)",
        "tinylm.version": __version__,
        "tinylm.tokenizer_kind": run.tokenizer.kind,
    }
    write_gguf(model, out / "model.gguf", outtype, vocabulary, metadata)
    write_text(out / "README.md", _readme(run, outtype))


def _readme(run: LoadedModel, outtype: str) -> str:
    name = Path(run.run_dir).name
    return f"""# {name} (GGUF, {outtype})

`model.gguf`: the tinylm run `{name}` ({run.module.describe()}, {run.tokenizer.kind} tokenizer) for llama.cpp,
written by tinylm {__version__}. Its context is {run.module.config.block_size} tokens, prompt included.

    llama-cli -m model.gguf -p "ROMEO:" -n 200 --temp 0.8
    python -c "import llama_cpp; m = llama_cpp.Llama('model.gguf', n_ctx={run.module.config.block_size}); \\
print(m('ROMEO:', max_tokens=100, temperature=0)['choices'][0]['text'])"

The tokenizer gives tinylm's ids for any text made of characters the run was trained on; <eos> ends a text.
"""
