"""Prepared token files (tinylm/data/tokenfile.py): `tinylm prepare` streams a corpus into memory-mapped ids
that equal the in-memory path's token for token, and training reads them without the text."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file

import tinylm
from tinylm import tokenizers
from tinylm.cli import main as cli
from tinylm.data import TokenWindows, eval_batches, load_split, open_prepared, prepare, sources, tokenfile
from tinylm.data.sources import CorpusFile
from tinylm.errors import TinyLMError
from tinylm.run import migrations
from tinylm.tokenizers import TokenizerConfig, build_tokenizer, encoding
from tinylm.tokenizers.encoding import NEWLINE, EncodingStrategy
from tinylm.training.loop import TrainingData

QUIET = {"progress": False, "echo": lambda s: None}
TINY = ["--model", "lstm", "--hidden", "48", "--embed", "16", "--layers", "1", "--dropout", "0", "--block-size", "32",
        "--batch-size", "32", "--warmup-steps", "5", "--lr", "0.01", "--sample-tokens", "20", "--quiet",
        "--threads", "1"]


def tricky_text(n_words: int = 4000, seed: int = 0) -> str:
    """Words joined by the whitespace that trips chunked encoders: blank lines, trailing and leading spaces,
    indented lines, CRLF, exotic spaces, plus special-token text, contractions, digits and emoji."""
    rnd = random.Random(seed)
    words = ["the", "King", "o'er", "don't", "'s", "123", "héllo", "😀", "<eos>", "-", "!", ",", "ROMEO:"]
    gaps = [" ", "  ", "\n", "\n\n", " \n", "\n ", "\n  ", "\t", "\r\n", "\u3000", "\n\u00a0", "\n\n\n", " \n\n "]
    return "".join(rnd.choice(words) + (rnd.choice(gaps) if rnd.random() < 0.5 else " ") for _ in range(n_words))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of ~50 characters read 300 bytes at a time: hundreds of cuts even in a small text."""
    monkeypatch.setattr(encoding, "CHUNK_CHARS", 50)
    monkeypatch.setattr(sources, "READ_BYTES", 300)


def in_memory(source, config: TokenizerConfig, val_fraction: float = 0.1):
    """What `tinylm train` does with the text: split, build the tokenizer on the train part, encode each split."""
    train, val = load_split(tinylm.DataConfig(source=str(source), val_fraction=val_fraction))
    tokenizer = build_tokenizer(config, train)
    fingerprint = TrainingData(train_text=train, val_text=val).fingerprint  # what a run checks on resume
    return tokenizer, tokenizer.encode(train), tokenizer.encode(val), fingerprint


def test_shakespeare_char_equals_the_in_memory_path(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(data_dir))
    prepared = prepare("shakespeare", TokenizerConfig(), tmp_path / "prep", progress=False)
    assert (len(prepared.train), len(prepared.val)) == (1_003_854, 111_540)
    assert isinstance(prepared.train, np.memmap) and not prepared.train.flags.writeable
    tokenizer, train, val, fingerprint = in_memory("shakespeare", TokenizerConfig())
    assert np.array_equal(prepared.train, train) and np.array_equal(prepared.val, val)
    assert prepared.tokenizer.backend.to_str() == tokenizer.backend.to_str()
    assert prepared.data_sha256 == fingerprint  # the same fingerprint as training on the text
    meta = json.loads((tmp_path / "prep" / "tokens.json").read_text())
    assert meta["dtype"] == "uint16" and meta["train"] == {"tokens": 1_003_854, "chars": 1_003_854}
    assert meta["version"] == 1 and meta["tokenizer"] == "char" and meta["val_fraction"] == 0.1
    assert (tmp_path / "prep" / "train.bin").stat().st_size == 2 * 1_003_854
    assert not list(tmp_path.glob(".prep*"))  # no staging folder left


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_chunked_encoding_equals_encoding_each_split_whole(tmp_path, small_chunks, kind):
    path = tmp_path / "tricky.txt"
    path.write_bytes(tricky_text().encode("utf-8"))
    config = TokenizerConfig(kind=kind, vocab_size=600 if kind == "bpe" else None)
    prepared = prepare(str(path), config, tmp_path / "prep", val_fraction=0.2, progress=False)
    tokenizer, train, val, fingerprint = in_memory(path, config, val_fraction=0.2)
    assert prepared.tokenizer.backend.to_str() == tokenizer.backend.to_str()
    assert prepared.train.tolist() == train and prepared.val.tolist() == val
    assert prepared.data_sha256 == fingerprint


def test_bpe_cuts_at_any_newline_would_change_the_tokens(tmp_path, small_chunks, monkeypatch):
    """The test above is sensitive: cutting byte-level BPE at every newline (the char/word rule) differs."""
    monkeypatch.setitem(tokenizers.ENCODING_STRATEGIES, "bpe", EncodingStrategy(cut=NEWLINE))
    path = tmp_path / "tricky.txt"
    path.write_text(tricky_text(), encoding="utf-8")
    config = TokenizerConfig(kind="bpe", vocab_size=600)
    prepared = prepare(str(path), config, tmp_path / "prep", progress=False)
    assert prepared.train.tolist() != in_memory(path, config)[1]


def test_char_lookup_table_equals_the_backend(tmp_path, monkeypatch):
    """Char ids come from a lookup table; the backend gives the same, <unk>, special-token text and all."""
    path = tmp_path / "text.txt"
    path.write_text(tricky_text(3000, seed=1) + "rare: \u00c6 \U0001f600 <unk><pad>", encoding="utf-8")
    config = TokenizerConfig(kind="char", min_freq=3)  # rare characters encode to <unk>
    fast = prepare(str(path), config, tmp_path / "fast", progress=False)
    monkeypatch.setitem(tokenizers.ENCODING_STRATEGIES, "char",
                        dataclasses.replace(tokenizers.ENCODING_STRATEGIES["char"], char_table=False))
    slow = prepare(str(path), config, tmp_path / "slow", progress=False)
    assert np.array_equal(fast.train, slow.train) and np.array_equal(fast.val, slow.val)
    assert fast.tokenizer.unk_id in set(fast.val.tolist())


def pretrained_folder(folder, pre_tokenizer, text: str):
    """A small BPE saved as a transformers tokenizer folder (what --tokenizer NAME_OR_FOLDER loads)."""
    transformers = pytest.importorskip("transformers")
    import tokenizers as hf

    backend = hf.Tokenizer(hf.models.BPE())
    backend.pre_tokenizer = pre_tokenizer
    trainer = hf.trainers.BpeTrainer(vocab_size=400, special_tokens=["</s>"], show_progress=False,
                                     initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator([text], trainer)
    transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>").save_pretrained(str(folder))
    return str(folder)


def test_a_pretrained_tokenizer_is_prepared_chunk_by_chunk_or_refused(tmp_path, small_chunks):
    import tokenizers as hf

    path = tmp_path / "text.txt"
    path.write_text(tricky_text(1500), encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    gpt2_like = pretrained_folder(tmp_path / "gpt2-like", hf.pre_tokenizers.ByteLevel(add_prefix_space=False), text)
    config = TokenizerConfig(kind=gpt2_like)
    prepared = prepare(str(path), config, tmp_path / "prep", progress=False)
    assert prepared.train.tolist() == in_memory(path, config)[1]
    # SentencePiece-style: a text's first word gets a prefix, so encoding from a line start differs
    sentencepiece_like = pretrained_folder(tmp_path / "sp-like", hf.pre_tokenizers.Metaspace(), text)
    with pytest.raises(TinyLMError, match="cannot be prepared chunk by chunk"):
        prepare(str(path), TokenizerConfig(kind=sentencepiece_like), tmp_path / "sp", progress=False)
    assert not (tmp_path / "sp").exists()


def test_a_folder_streams_as_read_folder_joins_it(tmp_path, small_chunks):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"\n\nFirst file,\r\nwith CRLF lines.\r\n\r\n\r\n")
    (folder / "b.txt").write_text("", encoding="utf-8")
    (folder / "sub" / "c.txt").write_text("\n" + tricky_text(800) + "\n\n\n", encoding="utf-8")
    (folder / "d.txt").write_text("last\n", encoding="utf-8")
    prepared = prepare(str(folder), TokenizerConfig(), tmp_path / "prep", progress=False)
    tokenizer, train, val, fingerprint = in_memory(folder, TokenizerConfig())
    assert prepared.train.tolist() == train and prepared.val.tolist() == val
    assert prepared.data_sha256 == fingerprint


def test_a_corpus_with_its_own_validation_file_keeps_it(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "fake").mkdir(parents=True)
    (data / "fake" / "train.txt").write_text(tricky_text(2000, seed=2), encoding="utf-8")
    (data / "fake" / "valid.txt").write_text(tricky_text(300, seed=3), encoding="utf-8")
    monkeypatch.setenv("TINYLM_DATA_DIR", str(data))
    monkeypatch.setitem(sources.BUILTIN_CORPORA, "fake", {
        "train": CorpusFile("fake/train.txt", "https://example.invalid/train.txt", None),
        "valid": CorpusFile("fake/valid.txt", "https://example.invalid/valid.txt", None),
    })
    prepared = prepare("fake", TokenizerConfig(kind="word"), tmp_path / "prep", progress=False)
    tokenizer, train, val, fingerprint = in_memory("fake", TokenizerConfig(kind="word"))
    assert prepared.train.tolist() == train and prepared.val.tolist() == val
    assert prepared.meta["val_split"] == "source" and prepared.meta["val_fraction"] is None


def test_a_gutenberg_book_is_prepared_as_training_reads_it(tmp_path, small_chunks, monkeypatch):
    """prepare finds and reads its source through data/sources.py, so every source training reads works."""
    (tmp_path / "data" / "gutenberg").mkdir(parents=True)
    framed = ("\ufeffThe Project Gutenberg eBook\r\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\r\n\r\n"
              + tricky_text(1500, seed=4) + "\r\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\r\nThe licence.\r\n")
    (tmp_path / "data" / "gutenberg" / "pg77.txt").write_text(framed, encoding="utf-8")
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path / "data"))
    prepared = prepare("gutenberg:77", TokenizerConfig(kind="word"), tmp_path / "prep", progress=False)
    tokenizer, train, val, fingerprint = in_memory("gutenberg:77", TokenizerConfig(kind="word"))
    assert prepared.train.tolist() == train and prepared.val.tolist() == val
    assert prepared.data_sha256 == fingerprint and "licence" not in prepared.tokenizer.backend.get_vocab()


def test_ids_are_uint32_when_the_vocabulary_outgrows_uint16(tmp_path):
    assert tokenfile.token_dtype(65_536) == "uint16" and tokenfile.token_dtype(65_537) == "uint32"
    path = tmp_path / "words.txt"
    path.write_text(" ".join(f"w{i}" for i in range(70_000)) + "\n" + " ".join(f"w{i}" for i in range(0, 70_000, 7)),
                    encoding="utf-8")
    prepared = prepare(str(path), TokenizerConfig(kind="word"), tmp_path / "prep", progress=False)
    assert prepared.dtype == "uint32" and prepared.train.dtype == np.dtype("<u4")
    assert prepared.tokenizer.vocab_size > 65_536 and int(prepared.train.max()) >= 65_536
    assert prepared.train.tolist() == in_memory(path, TokenizerConfig(kind="word"))[1]


def test_memmap_windows_and_eval_batches_equal_the_tensor_ones(tmp_path):
    ids = np.random.default_rng(0).integers(0, 300, size=5_003).astype("<u2")
    path = tmp_path / "ids.bin"
    ids.tofile(path)
    mapped = np.memmap(path, dtype="<u2", mode="r")
    tensor = torch.from_numpy(ids.astype(np.int64))
    for block, batch in [(32, 7), (100, 50), (5_002, 3), (5_003, 2)]:
        a, b = list(eval_batches(mapped, block, "every", batch)), list(eval_batches(tensor, block, "every", batch))
        assert len(a) == len(b) and all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b))
        assert all(x.dtype == torch.long for x, _ in a)
    a, b = TokenWindows(mapped, 32, 16), TokenWindows(tensor, 32, 16)
    assert a.num_tokens == b.num_tokens and len(a) == len(b)
    for (x, y), (u, v) in zip(a.epoch(8, seed=3), b.epoch(8, seed=3)):
        assert torch.equal(x, u) and torch.equal(y, v) and x.dtype == torch.long
    assert a.ids is mapped  # windows index the map; the ids are never copied whole


def test_train_on_a_prepared_folder_reloads_and_resumes_exactly(tmp_path, shakespeare_text, capsys):
    (tmp_path / "corpus.txt").write_text(shakespeare_text[:20_000], encoding="utf-8")
    assert cli(["prepare", str(tmp_path / "corpus.txt"), "--out", str(tmp_path / "prep"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train"]["tokens"] == 18_000 and summary["val"]["tokens"] == 2_000
    assert summary["dtype"] == "uint16" and summary["mb_per_s"] > 0 and summary["path"] == str(tmp_path / "prep")
    (tmp_path / "corpus.txt").unlink()  # training needs only the prepared folder
    prep = str(tmp_path / "prep")
    assert cli(["train", "--data", prep, "--max-steps", "30", "--out", str(tmp_path / "run"), *TINY]) == 0
    run = tinylm.load(tmp_path / "run")
    metrics = run.metrics
    assert [m["step"] for m in metrics] == [18, 30]  # a full epoch of 18 steps, then one cut by --max-steps
    assert metrics[1]["val_loss"] < metrics[0]["val_loss"] < math.log(run.tokenizer.vocab_size)
    assert run.config.data.source == prep and run.config.tokenizer.kind == "char"
    assert run.config.train.sample_prompt == "First Citizen:"
    assert run.generate("First", max_new_tokens=20, seed=1).startswith("First")
    # evaluation reads val.bin, as training did (the text is gone)
    assert math.isclose(run.evaluate().loss, min(m["val_loss"] for m in metrics), rel_tol=1e-4)

    assert cli(["train", "--data", prep, "--max-steps", "40", "--out", str(tmp_path / "straight"), *TINY]) == 0
    assert cli(["train", "--resume", str(tmp_path / "run"), "--max-steps", "40", "--quiet"]) == 0
    straight, resumed = (load_file(str(tmp_path / name / "checkpoint" / "model.safetensors"))
                         for name in ("straight", "run"))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_resume_refuses_a_folder_prepared_again_differently(tmp_path, small_corpus):
    prepare(str(small_corpus), TokenizerConfig(), tmp_path / "prep", progress=False)
    tinylm.train(tiny_config(tmp_path / "prep", epochs=1, max_steps=3), out=tmp_path / "run", **QUIET)
    prepare(str(small_corpus), TokenizerConfig(), tmp_path / "prep", val_fraction=0.2, progress=False,
            overwrite=True)
    with pytest.raises(TinyLMError, match="prepared tokens .* changed"):
        tinylm.resume(tmp_path / "run", epochs=2, max_steps=6, **QUIET)


@pytest.mark.parametrize("flags, message", [
    (["--tokenizer", "bpe"], "prepared with its own tokenizer"),
    (["--vocab-size", "500"], "prepared with its own tokenizer"),
    (["--lines"], "--lines cannot train on it"),
    (["--target", "last"], "--target last"),
    (["--val-data", "shakespeare"], "drop --val-data"),
])
def test_train_refuses_flags_that_a_prepared_folder_fixes(tmp_path, small_corpus, capsys, flags, message):
    prepare(str(small_corpus), TokenizerConfig(), tmp_path / "prep", progress=False)
    assert cli(["train", "--data", str(tmp_path / "prep"), "--out", str(tmp_path / "run"), *flags, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_bad_prepared_folders_are_user_errors(tmp_path, small_corpus):
    with pytest.raises(TinyLMError, match="no such prepared folder"):
        open_prepared(tmp_path / "missing")
    prepare(str(small_corpus), TokenizerConfig(), tmp_path / "prep", progress=False)
    meta_path = tmp_path / "prep" / "tokens.json"
    meta = meta_path.read_text()

    meta_path.write_text(meta[: len(meta) // 2])
    with pytest.raises(TinyLMError, match="tokens.json is corrupted .*not valid JSON"):
        open_prepared(tmp_path / "prep")
    with pytest.raises(TinyLMError, match="corrupted"):  # training on it says so too
        tinylm.train(tiny_config(tmp_path / "prep"), out=tmp_path / "run", **QUIET)
    meta_path.write_text(json.dumps({**json.loads(meta), "train": {"chars": 3}}))
    with pytest.raises(TinyLMError, match="missing or bad field"):
        open_prepared(tmp_path / "prep")
    meta_path.write_text(meta)

    train_bin = tmp_path / "prep" / "train.bin"
    train_bin.write_bytes(train_bin.read_bytes()[:-10])
    with pytest.raises(TinyLMError, match=r"train.bin holds [\d,]+ bytes but tokens.json says [\d,]+ uint16"):
        open_prepared(tmp_path / "prep")

    with pytest.raises(TinyLMError, match="already holds a prepared corpus; pass --overwrite"):
        prepare(str(small_corpus), TokenizerConfig(), tmp_path / "prep", progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(TinyLMError, match="not a prepared corpus"):
        prepare(str(small_corpus), TokenizerConfig(), tmp_path / "other", progress=False, overwrite=True)
    with pytest.raises(TinyLMError, match="validation split .* is empty"):
        prepare(str(small_corpus), TokenizerConfig(), tmp_path / "p0", val_fraction=0.0, progress=False)


def test_an_interrupted_prepare_leaves_nothing_and_keeps_the_old_folder(tmp_path, small_corpus, monkeypatch):
    first = prepare(str(small_corpus), TokenizerConfig(), tmp_path / "prep", progress=False)
    before = first.train.tolist()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tokenfile, "write_json", killed)  # dies after the token files, before tokens.json
    with pytest.raises(KeyboardInterrupt):
        prepare(str(small_corpus), TokenizerConfig(kind="word"), tmp_path / "prep", progress=False, overwrite=True)
    with pytest.raises(KeyboardInterrupt):
        prepare(str(small_corpus), TokenizerConfig(), tmp_path / "new", progress=False)
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prep", "small.txt"]  # no staging folder either
    assert open_prepared(tmp_path / "prep").train.tolist() == before


def test_training_on_a_large_text_file_suggests_prepare(tmp_path, small_corpus, monkeypatch):
    monkeypatch.setattr(tokenfile, "LARGE_TEXT_BYTES", 1000)
    lines = []
    tinylm.train(tiny_config(small_corpus, epochs=1, max_steps=2), out=tmp_path / "run", progress=False,
                 echo=lines.append)
    notes = [line for line in lines if "tinylm prepare" in line]
    assert len(notes) == 1 and notes[0].startswith("note:") and "\n" not in notes[0]



FIXTURES = Path(__file__).parent / "fixtures" / "runs-v1"


def test_a_folder_prepared_by_an_earlier_tinylm_opens_and_trains(tmp_path, capsys):
    """tokens.json version 1, written before tokens.json went through tinylm.run.migrations (tests/fixtures/runs-v1)."""
    folder = tmp_path / "prepared-char"
    shutil.copytree(FIXTURES / "prepared-char", folder)
    prepared = open_prepared(folder)
    assert (len(prepared.train), len(prepared.val)) == (8_692, 966) and prepared.meta["version"] == 1
    assert prepared.tokenizer.kind == "char" and prepared.head.startswith("CLARA:")
    run = tinylm.train(tiny_config(folder, epochs=1), out=tmp_path / "run", **QUIET)
    assert len(run.metrics) == 1 and run.metrics[0]["val_loss"] < math.log(prepared.tokenizer.vocab_size)
    assert run.generate("CLARA:", max_new_tokens=10, seed=0).startswith("CLARA:")

    # Today's prepare of the same text writes the same ids, tokenizer and fingerprints, stamped with the version.
    again = prepare(str(FIXTURES / "corpus.txt"), TokenizerConfig(), tmp_path / "again", progress=False)
    for name in ("train.bin", "val.bin", "tokenizer.json"):
        assert (tmp_path / "again" / name).read_bytes() == (folder / name).read_bytes(), name
    changing = ("source", "seconds")
    assert {k: v for k, v in again.meta.items() if k not in changing} == \
        {k: v for k, v in prepared.meta.items() if k not in changing}
    assert again.meta["version"] == migrations.CURRENT[migrations.TOKENS_JSON]

    # A tokens.json from a newer tinylm: one line that says so, from the API and the CLI.
    meta = json.loads((folder / "tokens.json").read_text())
    (folder / "tokens.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(TinyLMError, match=r"written by a newer tinylm \(format 99; this one reads up to 1\)"):
        open_prepared(folder)
    assert cli(["train", "--data", str(folder), "--out", str(tmp_path / "run2"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "newer tinylm" in err and "upgrade tinylm" in err and err.count("\n") == 1
    assert not (tmp_path / "run2").exists()
    (folder / "tokens.json").write_text(json.dumps({**meta, "version": "one"}))
    with pytest.raises(TinyLMError, match="tokens.json is damaged"):
        open_prepared(folder)
