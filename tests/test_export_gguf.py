"""GGUF export (tinylm/publishing/gguf.py, `tinylm export --format gguf`): read back with the gguf package
everywhere; run in llama.cpp where llama-cpp-python is installed (it compiles for ~20 minutes: not in CI)."""

from __future__ import annotations

import numpy as np
import pytest
import tokenizers
import torch

import tinylm
from tinylm.cli import main
from tinylm.errors import TinyLMError
from tinylm.generation.sampling import SamplingConfig, generate_ids
from tinylm.models import model_config

gguf = pytest.importorskip("gguf")

GERMAN = "Habe nun, ach! Philosophie,\nJuristerei und Medizin,\nUnd leider auch Theologie\nDurchaus studiert, " \
         "mit heißem Bemühn. Da steh ich nun, ich armer Tor! Über Ähnliches: Öl, Füße — 😀 «Grüße» "


def _train(folder, text, tokenizer):
    (folder / "corpus.txt").write_text(text, encoding="utf-8")
    config = tinylm.RunConfig(
        data=tinylm.DataConfig(source=str(folder / "corpus.txt"), block_size=32),
        tokenizer=tokenizer,
        model=model_config("gpt", layers=2, heads=2, embed=32, dropout=0.0),
        train=tinylm.TrainConfig(max_steps=30, epochs=1, batch_size=8, warmup_steps=1, sample_tokens=8),
    )
    tinylm.train(config, out=folder / "run", progress=False, echo=lambda s: None)
    return folder / "run"


@pytest.fixture(scope="module")
def char_run(tmp_path_factory, shakespeare_text):
    return _train(tmp_path_factory.mktemp("char"), shakespeare_text[:6_000] + GERMAN * 20,
                  tinylm.TokenizerConfig(kind="char"))


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory, shakespeare_text):
    return _train(tmp_path_factory.mktemp("bpe"), shakespeare_text[:20_000] + GERMAN * 20,
                  tinylm.TokenizerConfig(kind="bpe", vocab_size=300))


@pytest.fixture(scope="module")
def ascii_run(tmp_path_factory, shakespeare_text):
    """A char vocabulary without a character of more than one byte: no merges at all."""
    return _train(tmp_path_factory.mktemp("ascii"), shakespeare_text[:6_000], tinylm.TokenizerConfig(kind="char"))


@pytest.fixture(scope="module", params=["char", "bpe", "ascii"])
def run_dir(request, char_run, bpe_run, ascii_run):
    return {"char": char_run, "bpe": bpe_run, "ascii": ascii_run}[request.param]


def _export(run_dir, tmp_path, outtype="f32"):
    return tinylm.export_run(run_dir, tmp_path / f"gguf-{outtype}", format="gguf", outtype=outtype) / "model.gguf"


def _fields(reader) -> dict:
    return {name: field.contents() for name, field in reader.fields.items()}


def test_byte_spelling_is_byte_level_bpe_s():
    """The byte table (GPT-2's bytes_to_unicode) spells every character as the tokenizers library does."""
    from tinylm.publishing.gguf import byte_spelling

    text = "".join(chr(i) for i in range(1, 0x3000, 7)) + GERMAN
    pieces = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(text)
    assert byte_spelling(text) == "".join(piece for piece, _ in pieces)


@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
def test_every_tensor_reads_back_as_the_runs_weights(char_run, tmp_path, outtype):
    from tinylm.models.gguf_file import gguf_tensor_names

    run = tinylm.load(char_run)
    path = _export(char_run, tmp_path, outtype)
    reader = gguf.GGUFReader(path)
    tensors = {t.name: t for t in reader.tensors}
    names = gguf_tensor_names(run.module)
    assert set(tensors) == set(names.values())  # no head: llama.cpp ties it to token_embd
    state = run.module.state_dict()
    for ours, theirs in names.items():
        tensor = tensors[theirs]
        expected = state[ours].float().numpy()
        got = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(expected.shape)
        matrix = expected.ndim == 2 and theirs != "position_embd.weight"
        wanted_type = {"f32": "F32", "f16": "F16", "q8_0": "Q8_0"}[outtype] if matrix else "F32"
        assert tensor.tensor_type.name == wanted_type, theirs
        tolerance = {"F32": 0, "F16": 1e-3, "Q8_0": np.abs(expected).max() / 127}[wanted_type]
        np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance + 1e-7, err_msg=theirs)


def test_metadata_names_tinylm_the_architecture_and_the_special_tokens(run_dir, tmp_path):
    run = tinylm.load(run_dir)
    fields = _fields(gguf.GGUFReader(_export(run_dir, tmp_path)))
    c = run.module.config
    assert fields["general.architecture"] == "gpt2"
    assert fields["tinylm.version"] == tinylm.__version__ and "tinylm" in fields["general.description"]
    assert (fields["gpt2.context_length"], fields["gpt2.embedding_length"], fields["gpt2.block_count"],
            fields["gpt2.attention.head_count"], fields["gpt2.feed_forward_length"]) == \
        (c.block_size, c.embed, c.layers, c.heads, 4 * c.embed)
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    tokens = fields["tokenizer.ggml.tokens"]
    assert len(tokens) == run.tokenizer.vocab_size == c.vocab_size
    assert tokens[fields["tokenizer.ggml.eos_token_id"]] == "<eos>" == tokens[run.tokenizer.eos_id]
    types = fields["tokenizer.ggml.token_type"]
    assert types[run.tokenizer.eos_id] == gguf.TokenType.CONTROL
    assert types[run.tokenizer.unk_id] == gguf.TokenType.UNKNOWN
    assert fields["tokenizer.ggml.add_bos_token"] is False


def _byte_level_bpe(fields) -> tokenizers.Tokenizer:
    """The GGUF's vocabulary and merges as a byte-level BPE tokenizer with GPT-2's pre-tokenizer: what
    llama.cpp's `gpt2` tokenizer computes, in the tokenizers library."""
    vocab = {token: i for i, token in enumerate(fields["tokenizer.ggml.tokens"])}
    merges = [tuple(m.split(" ")) for m in fields["tokenizer.ggml.merges"]]
    # llama.cpp merges pieces that are no token (a character's first bytes); the tokenizers library wants
    # ids for them: past the vocabulary, where an id of the text would show them
    for piece in [p for left, right in merges for p in (left, right, left + right)]:
        vocab.setdefault(piece, len(vocab))
    backend = tokenizers.Tokenizer(tokenizers.models.BPE(vocab, merges))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = tokenizers.decoders.ByteLevel()
    control = [t for t, kind in zip(fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"])
               if kind in (gguf.TokenType.CONTROL, gguf.TokenType.UNKNOWN)]
    backend.add_special_tokens(control)  # matched in the text first, as llama.cpp does with special=True
    return backend


def _texts_of(run) -> list[str]:
    """Test texts made of the run's characters only (the ASCII run has no umlauts)."""
    texts = [GERMAN, GERMAN[::-1], "Über  Öl\n\nßüß—😀😀 ", "First Citizen:\nBefore we proceed", "<eos>Be it so."]
    texts = [t for t in texts if not run.tokenizer.unknown_symbols(t)]
    assert len(texts) >= 2
    return texts


def test_the_vocabulary_gives_tinylms_ids_for_german_text(run_dir, tmp_path):
    """Read back: the file's vocabulary and merges, as byte-level BPE, give the run's ids for any text of
    its characters (umlauts, ß, dashes, emoji), and decode them back to the text."""
    run = tinylm.load(run_dir)
    backend = _byte_level_bpe(_fields(gguf.GGUFReader(_export(run_dir, tmp_path))))
    for text in _texts_of(run):
        ids = run.tokenizer.encode(text)
        assert backend.encode(text).ids == ids
        assert backend.decode(ids, skip_special_tokens=False) == text


def test_word_tokenizers_and_recurrent_runs_are_refused_in_one_line(tmp_path, shakespeare_text):
    (tmp_path / "c.txt").write_text(shakespeare_text[:4_000], encoding="utf-8")
    for name, tokenizer, family in (("word", "word", "gpt"), ("lstm", "char", "lstm")):
        config = tinylm.RunConfig(
            data=tinylm.DataConfig(source=str(tmp_path / "c.txt"), block_size=16),
            tokenizer=tinylm.TokenizerConfig(kind=tokenizer),
            model=model_config(family, embed=16, **({"heads": 2, "layers": 1} if family == "gpt" else {})),
            train=tinylm.TrainConfig(max_steps=1, epochs=1, batch_size=4, sample_tokens=2))
        tinylm.train(config, out=tmp_path / name, progress=False, echo=lambda s: None)
    with pytest.raises(TinyLMError, match="char and byte-level BPE tokenizers"):
        tinylm.export_run(tmp_path / "word", tmp_path / "out-word", format="gguf")
    with pytest.raises(TinyLMError, match="GPT runs only"):
        tinylm.export_run(tmp_path / "lstm", tmp_path / "out-lstm", format="gguf")
    assert not (tmp_path / "out-word").exists() and not (tmp_path / "out-lstm").exists()


def test_cli_export_gguf(char_run, tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["export", str(char_run), str(out), "--format", "gguf", "--outtype", "q8_0"]) == 0
    assert "model.gguf" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model.gguf"]
    assert main(["export", str(char_run), str(out), "--format", "gguf"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["export", str(char_run), str(out), "--format", "gguf", "--overwrite"]) == 0
    (out / "notes.txt").write_text("mine")  # a file no export writes: the folder is someone's now
    assert main(["export", str(char_run), str(out), "--format", "gguf", "--overwrite"]) == 2
    assert "notes.txt" in capsys.readouterr().err and (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    assert main(["export", str(char_run), str(tmp_path / "t"), "--outtype", "f16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--outtype applies to --format gguf only" in err


def test_a_missing_gguf_package_names_the_extra(char_run, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gguf", None)  # what an environment without the package raises
    assert main(["export", str(char_run), str(tmp_path / "g"), "--format", "gguf"]) == 2
    assert "pip install 'tinylm[gguf]'" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


# -- llama.cpp itself -----------------------------------------------------------------------------------
def test_llama_cpp_tokenizes_and_generates_as_tinylm(run_dir, tmp_path):
    """In llama.cpp: the same ids for the same German text, and the same greedy continuation."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama.cpp is not installed (pip install "
                                                        "llama-cpp-python; it compiles for ~20 minutes)")
    run = tinylm.load(run_dir)
    llm = llama_cpp.Llama(str(_export(run_dir, tmp_path)), n_ctx=run.module.config.block_size, n_threads=1,
                          verbose=False, logits_all=True)  # scores are kept only with logits_all
    for text in _texts_of(run):
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == run.tokenizer.encode(text)
    prompt = run.tokenizer.encode("Da steh ich")
    new = run.module.config.block_size - len(prompt)
    ours = list(generate_ids(run.module, prompt, SamplingConfig(max_new_tokens=new, greedy=True, precision="fp32",
                                                                stop_at_eos=False)))
    theirs, llm_ids = [], prompt
    llm.reset()
    llm.eval(prompt)
    for _ in range(new):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        theirs.append(token)
        if len(theirs) < new:
            llm.eval([token])
    assert theirs == ours, (llm_ids, run.tokenizer.decode(theirs), run.tokenizer.decode(ours))
    logits = run.module(torch.tensor([prompt]))[0][0, -1].detach().numpy()
    llm.reset()
    llm.eval(prompt)
    np.testing.assert_allclose(llm.scores[len(prompt) - 1], logits, atol=1e-3)
