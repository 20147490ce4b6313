"""Tokenizers (tinylm/tokenizers/__init__.py)."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.errors import TinyLMError
from tinylm.tokenizers import Tokenizer, TokenizerConfig, build_tokenizer


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


# -- word ---------------------------------------------------------------------------------------------
def test_word_splits_words_and_punctuation_with_lossy_whitespace():
    text = "Hello, world!  Don't\tgo.\n\nHello world\n"
    tok = build_tokenizer(TokenizerConfig("word"), text)
    pieces = [tok.token_text(i) for i in tok.encode("Hello, world! Don't")]
    assert pieces == ["Hello", ",", "world", "!", "Don't"]
    # documented: one space between tokens, none around newlines; runs of spaces and tabs collapse
    assert tok.decode(tok.encode(text)) == "Hello , world ! Don't go .\n\nHello world\n"
    assert tok.decode(tok.encode("Hello world\nHello world")) == "Hello world\nHello world"


def test_word_vocabulary_min_freq_vocab_size_and_unk():
    text = "the cat and the dog and the bird ."
    tok = build_tokenizer(TokenizerConfig("word", min_freq=2), text)
    assert tok.vocab_size == 3 + 2  # specials + the, and
    assert tok.encode("the cat") == [tok.encode("the")[0], tok.unk_id]
    assert tok.unknown_symbols("the cat, and the owl") == ["cat", ",", "owl"]
    top = build_tokenizer(TokenizerConfig("word", vocab_size=4), text)
    assert top.vocab_size == 4 and top.token_text(top.encode("the")[0]) == "the"  # the most frequent word
    with pytest.raises(TinyLMError, match="--vocab-size"):
        build_tokenizer(TokenizerConfig("word", vocab_size=3), text)


# -- bpe ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bpe():
    text = "To be, or not to be: that is the question.\n" * 20 + "Whether 'tis nobler in the mind to suffer\n"
    return build_tokenizer(TokenizerConfig("bpe", vocab_size=300), text)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_bpe_round_trips_any_unicode(bpe, text):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert bpe.unk_id not in ids


def test_bpe_learns_merges_and_checks_vocab_size(bpe):
    assert bpe.vocab_size == 300
    assert len(bpe.encode("to be, or not to be")) < len("to be, or not to be") / 2
    with pytest.raises(TinyLMError, match="at least 259"):
        build_tokenizer(TokenizerConfig("bpe", vocab_size=100), "text")


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_word_and_bpe_save_reload_and_load_in_transformers(tmp_path, kind):
    transformers = pytest.importorskip("transformers")
    text = "Hello, world! Hello again, world.\nNew line: café 🙂\n"
    tok = build_tokenizer(TokenizerConfig(kind, vocab_size=280 if kind == "bpe" else None), text)
    tok.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert again.kind == kind and again.encode(text) == tok.encode(text)
    assert (again.pad_id, again.unk_id, again.eos_id) == (tok.pad_id, tok.unk_id, tok.eos_id)
    auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert isinstance(auto, transformers.PreTrainedTokenizerFast)
    assert auto(text, add_special_tokens=False).input_ids == tok.encode(text)
    assert auto.decode(tok.encode(text)) == tok.decode(tok.encode(text))
    assert (auto.eos_token, auto.unk_token, auto.pad_token) == ("<eos>", "<unk>", "<pad>")


# -- pretrained (transformers) ------------------------------------------------------------------------
@pytest.fixture
def pretrained_dir(tmp_path):
    """A small byte-level BPE saved as a transformers tokenizer folder, GPT-2 style: <s> / </s>, no pad."""
    transformers = pytest.importorskip("transformers")
    import tokenizers as hf

    backend = hf.Tokenizer(hf.models.BPE())
    backend.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"], show_progress=False,
                                     initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(["the quick brown fox jumps over the lazy dog\n" * 10], trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>")
    folder = tmp_path / "pretrained"
    fast.save_pretrained(str(folder))
    return folder


def test_pretrained_tokenizer_from_a_local_folder(pretrained_dir, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = build_tokenizer(TokenizerConfig(str(pretrained_dir)), "the training text is not used")
    assert tok.kind == str(pretrained_dir)
    assert tok.vocab_size == len(transformers.AutoTokenizer.from_pretrained(str(pretrained_dir)))
    assert (tok.pad_id, tok.unk_id) == (None, None)
    assert tok.eos_id == tok.backend.token_to_id("</s>") and tok.bos_token == "<s>"
    text = "the lazy fox, naïve 🙂"
    assert tok.decode(tok.encode(text)) == text and tok.unknown_symbols(text) == []
    run_dir = tmp_path / "run"
    tok.save(run_dir)
    again = Tokenizer.load(run_dir)
    assert again.encode(text) == tok.encode(text) and (again.eos_token, again.bos_token) == ("</s>", "<s>")
    auto = transformers.AutoTokenizer.from_pretrained(str(run_dir))
    assert (auto.bos_token, auto.eos_token, auto.pad_token) == ("<s>", "</s>", None)
    assert auto(text, add_special_tokens=False).input_ids == tok.encode(text)


def test_generation_works_without_pad_and_unk(pretrained_dir):
    import tinylm
    from tinylm.loading import LoadedModel
    from tinylm.models import build_model, model_config

    tok = build_tokenizer(TokenizerConfig(str(pretrained_dir)), "")
    config = tinylm.RunConfig(data=tinylm.DataConfig(block_size=8),
                              model=model_config("gpt", layers=1, heads=1, embed=8))
    config.model.vocab_size = tok.vocab_size
    run = LoadedModel(build_model(config.model), tok, config)
    assert run.generate("the fox", max_new_tokens=12, seed=0).startswith("the fox")
    assert run.generate("", max_new_tokens=3, greedy=True) is not None  # starts from </s>
    assert len(run.next_token_distribution("the", top=3)) == 3


def test_unknown_pretrained_name_offline_is_a_user_error(monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TinyLMError, match="unknown tokenizer 'no-such-tokenizer-xyz'"):
        build_tokenizer(TokenizerConfig("no-such-tokenizer-xyz"), "text")


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_long_texts_encode_in_chunks_to_the_same_ids(kind, shakespeare_text):
    text = shakespeare_text[:300_000] + "\n\n  <eos> odd\n spacing \n\n\nend"
    tokenizer = build_tokenizer(TokenizerConfig(kind=kind, vocab_size=400 if kind == "bpe" else None), text)
    whole = tokenizer.backend.encode(text, add_special_tokens=False).ids
    pairs = list(tokenizer.encode_stream([text[i : i + 7_000] for i in range(0, len(text), 7_000)]))
    assert len(pairs) > 3 and "".join(chunk for chunk, _ in pairs) == text  # chunks, in order, of the whole text
    assert np.concatenate([ids for _, ids in pairs]).tolist() == whole
    tensor = tokenizer.encode_tensor(text)
    assert tensor.dtype == torch.long and tensor.tolist() == whole


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=299), min_size=1, max_size=12))
def test_byte_level_decoding_gives_text_only(bpe, ids):
    """Any id sequence (an untrained model's sample, a character cut in two) decodes to text: no U+FFFD,
    no control characters but newline and tab, no byte-alphabet stand-ins such as Ġ (the space byte)."""
    ids = [i % bpe.vocab_size for i in ids]
    text = bpe.decode(ids, text_only=True)
    assert not any(c == "\ufffd" or (unicodedata.category(c) in ("Cc", "Cn", "Co", "Cs") and c not in "\n\t")
                   for c in text), repr(text)
    assert "Ġ" not in text and "Ċ" not in text
    # Valid pieces are kept: a word and a character made of several bytes survive around the noise.
    word = bpe.encode(" café")
    assert bpe.decode([*word, *bpe.encode("\x01")], text_only=True) == " café"
    assert bpe.decode([*word, *bpe.encode("\x01")]) == " café\x01"  # exact otherwise


def test_generation_never_writes_pad_or_unk():
    """A model that puts nearly all its probability on <pad> and <unk> still writes text (or stops at <eos>)."""
    from tinylm.config import DataConfig, RunConfig
    from tinylm.loading import LoadedModel
    from tinylm.models import build_model, model_config

    tok = build_tokenizer(TokenizerConfig("char"), "abc de\n")
    config = RunConfig(data=DataConfig(source="unused"), tokenizer=TokenizerConfig("char"),
                       model=model_config("lstm", embed=8, hidden=8, layers=1, vocab_size=tok.vocab_size))
    module = build_model(config.model)
    with torch.no_grad():
        module.head.bias.fill_(0.0)
        module.head.bias[[tok.pad_id, tok.unk_id]] = 30.0  # e^30: the other tokens are one in 10^13
    run = LoadedModel(module, tok, config)
    for sampling in ({"greedy": True}, {"temperature": 1.0, "seed": 1}, {"temperature": 2.0, "seed": 2}):
        text = run.generate("ab", max_new_tokens=30, stop_at_eos=False, **sampling)
        assert "<unk>" not in text and "<pad>" not in text, sampling
        assert len(text.replace("<eos>", "_")) == 2 + 30  # 30 tokens: characters or <eos>, nothing else
    chart = dict(run.next_token_distribution("ab"))
    assert chart.get("<unk>", 0.0) == 0.0 and chart.get("<pad>", 0.0) == 0.0


def test_a_pretrained_tokenizer_is_trained_anew_to_the_vocab_size_asked(tmp_path, shakespeare_text):
    """`--tokenizer gpt2 --vocab-size 1024`: GPT-2's own pipeline trained on the corpus through transformers'
    train_new_from_iterator (here a GPT-2-style byte-level tokenizer saved in a folder stands in for gpt2), so the
    run's tokenizer loads with AutoTokenizer and a model stays under a million parameters."""
    pytest.importorskip("transformers")
    from test_finetune import make_tiny_gpt2
    from transformers import AutoTokenizer

    import tinylm

    text = shakespeare_text[:30_000]
    base = make_tiny_gpt2(tmp_path / "gpt2-like", text[:2000])
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    config = tinylm.RunConfig(data=tinylm.DataConfig(source=str(corpus), block_size=32),
                              tokenizer=tinylm.TokenizerConfig(kind=str(base), vocab_size=400),
                              model=tinylm.model_config("gpt", embed=32, layers=1, heads=2),
                              train=tinylm.TrainConfig(epochs=1, batch_size=16, sample_tokens=5, precision="fp32"))
    run = tinylm.train(config, out=tmp_path / "run", progress=False, echo=lambda s: None)
    assert run.tokenizer.vocab_size == 400 and config.tokenizer.retrains
    auto = AutoTokenizer.from_pretrained(tmp_path / "run")
    assert len(auto) == 400 and auto.decode(auto("ROMEO: ach!")["input_ids"]) == "ROMEO: ach!"
    assert auto.eos_token == AutoTokenizer.from_pretrained(base).eos_token  # the base's special tokens
    assert len(run.tokenizer.encode(text[:5000])) < len(AutoTokenizer.from_pretrained(base)(text[:5000])["input_ids"])
    with pytest.raises(tinylm.TinyLMError, match="base alphabet"):
        tinylm.tokenizers.build_tokenizer(tinylm.TokenizerConfig(kind=str(base), vocab_size=100), text)
