"""Tokenizers (tinylm/tokenizers.py)."""

from __future__ import annotations

import pytest

from tinylm.tokenizers import Tokenizer, TokenizerConfig, build_tokenizer
from tinylm.errors import TinyLMError


def test_char_round_trip_and_vocabulary():
    text = "To be, or not to be:\nthat is the question.\n"
    tok = build_tokenizer(TokenizerConfig("char"), text)
    assert tok.vocab_size == len(set(text)) + 3  # + <pad>, <unk>, <eos>
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(text)) == len(text)


def test_unknown_characters_map_to_unk_and_are_listed():
    tok = build_tokenizer(TokenizerConfig("char"), "abc ")
    ids = tok.encode("abz éa")
    assert ids.count(tok.unk_id) == 2
    assert tok.unknown_symbols("abz éa zz") == ["z", "é"]


def test_min_freq_drops_rare_characters():
    tok = build_tokenizer(TokenizerConfig("char", min_freq=2), "aaab")
    assert tok.encode("b") == [tok.unk_id]


def test_saved_tokenizer_reloads_identically(tmp_path):
    text = "hello world\n"
    tok = build_tokenizer(TokenizerConfig("char"), text)
    tok.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert again.encode(text) == tok.encode(text)
    assert (again.pad_id, again.unk_id, again.eos_id) == (tok.pad_id, tok.unk_id, tok.eos_id)


def test_transformers_autotokenizer_loads_a_saved_tokenizer(tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = build_tokenizer(TokenizerConfig("char"), "hello world\n")
    tok.save(tmp_path)
    auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert auto("hello").input_ids == tok.encode("hello")
    assert auto.eos_token == "<eos>" and auto.unk_token == "<unk>" and auto.pad_token == "<pad>"
    assert auto.convert_tokens_to_ids("<eos>") == tok.eos_id


def test_unknown_kind_and_missing_file(tmp_path):
    with pytest.raises(TinyLMError, match="unknown tokenizer"):
        build_tokenizer(TokenizerConfig("klingon"), "text")
    with pytest.raises(TinyLMError, match="no tokenizer.json"):
        Tokenizer.load(tmp_path)
