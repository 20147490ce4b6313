"""Text sources, splits and windows (tinylm/data)."""

from __future__ import annotations

import hashlib
import unicodedata

import pytest
import torch

from tinylm.data import IGNORE, TokenWindows, eval_batches, load_corpus, sources, split_text
from tinylm.data.windows import stream_batches
from tinylm.errors import TinyLMError


def test_builtin_shakespeare_resolves_from_data_dir_and_matches_checksum(data_dir, monkeypatch):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(data_dir))
    corpus = load_corpus("shakespeare")
    assert len(corpus.train) == 1_115_394
    assert corpus.val is None
    digest = hashlib.sha256(corpus.train.encode("utf-8")).hexdigest()
    assert digest == sources.BUILTIN_CORPORA["shakespeare"]["train"].sha256


def test_shakespeare_split_follows_the_reference_convention(shakespeare_text):
    train, val = split_text(shakespeare_text, 0.1)
    assert (len(train), len(val)) == (1_003_854, 111_540)
    assert train + val == shakespeare_text


def test_wikitext_split_by_name(data_dir, monkeypatch):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(data_dir))
    corpus = load_corpus("wikitext2:valid")
    assert corpus.train.startswith(" \n = Homarus gammarus")
    # train.txt is not in the shared folder: the error says what to do instead
    with pytest.raises(TinyLMError, match="wikitext2:valid --val-data wikitext2:test"):
        load_corpus("wikitext2")


def test_builtin_missing_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path))
    with pytest.raises(TinyLMError) as err:
        load_corpus("shakespeare")
    message = str(err.value)
    assert "tinyshakespeare/input.txt" in message and str(tmp_path) in message


def test_download_is_verified_and_cached(tmp_path, monkeypatch, shakespeare_text):
    """A download goes through urllib (served here from a local file), is checked, then cached."""
    monkeypatch.delenv("TINYLM_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path / "nothing"))
    good = tmp_path / "good.txt"
    good.write_text(shakespeare_text, encoding="utf-8")
    spec = sources.BUILTIN_CORPORA["shakespeare"]["train"]
    monkeypatch.setitem(sources.BUILTIN_CORPORA, "shakespeare",
                        {"train": sources.CorpusFile(spec.relpath, good.as_uri(), spec.sha256)})
    assert load_corpus("shakespeare").train == shakespeare_text
    cached = sources.cache_dir() / "data" / spec.relpath
    assert cached.is_file()

    bad = tmp_path / "bad.txt"
    bad.write_text("not shakespeare", encoding="utf-8")
    cached.unlink()
    monkeypatch.setitem(sources.BUILTIN_CORPORA, "shakespeare",
                        {"train": sources.CorpusFile(spec.relpath, bad.as_uri(), spec.sha256)})
    with pytest.raises(TinyLMError, match="failed verification"):
        load_corpus("shakespeare")
    assert not cached.exists()


def test_file_folder_and_unknown_sources(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.txt").write_text("second\n", encoding="utf-8")
    (tmp_path / "docs" / "a.txt").write_text("first\n", encoding="utf-8")
    (tmp_path / "docs" / "skip.md").write_text("not text\n", encoding="utf-8")
    assert load_corpus(str(tmp_path / "docs")).train == "first\n\nsecond\n"
    assert load_corpus(str(tmp_path / "docs" / "a.txt")).train == "first\n"
    with pytest.raises(TinyLMError, match="neither a file"):
        load_corpus("no-such-corpus")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TinyLMError, match="no .txt files"):
        load_corpus(str(tmp_path / "empty"))


def test_non_utf8_file_gets_a_clear_error_or_an_encoding(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    with pytest.raises(TinyLMError, match="--encoding"):
        load_corpus(str(path))
    assert load_corpus(str(path), encoding="latin-1").train == "café crème\n"


def test_a_source_streams_the_text_it_reads_whole(tmp_path, monkeypatch):
    """find_source's streams (tinylm prepare) give load_corpus's text, whatever the pieces' sizes."""
    monkeypatch.setattr(sources, "READ_BYTES", 7)
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_bytes(b"\n\nFirst,\r\nCRLF \xc3\xa9t\xc3\xa9 lines.\r\n\r\n\r\n")
    (tmp_path / "docs" / "b.txt").write_bytes(b"")
    (tmp_path / "docs" / "sub" / "c.txt").write_bytes(b"old Mac\rends\n\n\n")
    gutenberg = "*** START OF THE PROJECT GUTENBERG EBOOK X ***\r\nthe book\r\n*** END OF THE PROJECT GUTENBERG EBOOK X"
    (tmp_path / "book.txt").write_text("\ufeffheader\r\n" + gutenberg, encoding="utf-8")
    for source, options in [(tmp_path / "docs", {}), (tmp_path / "docs" / "a.txt", {}),
                            (tmp_path / "book.txt", {"strip_gutenberg_text": True}),
                            (tmp_path / "docs", {"strip_gutenberg_text": False, "encoding": "latin-1"})]:
        found = sources.find_source(str(source), **options)
        pieces = list(found.train.stream())
        assert "".join(pieces) == load_corpus(str(source), **options).train and found.val is None
        assert len(pieces) > 3 or options.get("strip_gutenberg_text")
    assert load_corpus(str(tmp_path / "book.txt"), strip_gutenberg_text=True).train == "the book\n"
    # what both readings give, written out: line ends made \n, files joined in order, blank edges kept
    assert load_corpus(str(tmp_path / "docs")).train == "First,\nCRLF été lines.\n\n\n\nold Mac\nends\n"

    # the training and validation streams of one pass cut where split_text cuts
    text = load_corpus(str(tmp_path / "docs")).train
    found = sources.find_source(str(tmp_path / "docs"))
    for fraction in (0.1, 0.5, 0.9):
        cut = found.fraction_cut(fraction)
        train, val = found.split_streams(cut)
        assert ("".join(train), "".join(val)) == split_text(text, fraction)

    # a decoding error names the byte of the file, however far into it (here: the ninth block)
    (tmp_path / "bad.txt").write_bytes(b"x" * 60 + b"\xff" + b"y" * 20)
    for reader in (lambda: load_corpus(str(tmp_path / "bad.txt")),
                   lambda: list(sources.find_source(str(tmp_path / "bad.txt")).train.stream())):
        with pytest.raises(TinyLMError, match=r"bad.txt is not valid utf-8 text \(byte 60\); pass --encoding"):
            reader()


def test_a_blank_part_of_a_split_is_refused_before_any_work(tmp_path):
    def found(text: str) -> sources.TextSource:
        (tmp_path / "text.txt").write_text(text, encoding="utf-8")
        return sources.find_source(str(tmp_path / "text.txt"))

    assert found("words\n" * 10).fraction_cut(0.1) == 54
    with pytest.raises(TinyLMError, match="validation split .* is empty"):
        found("words\n" + " \n" * 30).fraction_cut(0.5)
    with pytest.raises(TinyLMError, match="training text .* is empty"):
        found(" \n" * 30 + "words\n").fraction_cut(0.1)
    with pytest.raises(TinyLMError, match="must be in"):
        found("words\n").fraction_cut(1.0)


def test_hugging_face_dataset_saved_locally(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"title": ["one title", "two titles"], "n": [1, 2]}),
        "test": datasets.Dataset.from_dict({"title": ["held out"], "n": [3]}),
    })
    ds.save_to_disk(str(tmp_path / "saved"))
    assert load_corpus(f"hf:{tmp_path / 'saved'}", text_column="title").train == "one title\ntwo titles\n"
    assert load_corpus(f"hf:{tmp_path / 'saved'}", text_column="title", hf_split="test").train == "held out\n"
    with pytest.raises(TinyLMError, match="no column 'text'"):
        load_corpus(f"hf:{tmp_path / 'saved'}")
    # a dataset folder of data files goes through datasets.load_dataset
    (tmp_path / "jsonl").mkdir()
    (tmp_path / "jsonl" / "train.jsonl").write_text('{"text": "a line"}\n{"text": "another"}\n', encoding="utf-8")
    assert load_corpus(f"hf:{tmp_path / 'jsonl'}").train == "a line\nanother\n"


def test_hugging_face_dataset_unavailable_offline(monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TinyLMError, match="could not load Hugging Face dataset"):
        load_corpus("hf:tinylm-tests/no-such-dataset-anywhere")


def test_every_target_windows():
    ids = torch.arange(20)
    windows = TokenWindows(ids, block_size=4, stride=4)
    assert len(windows) == 4  # starts 0, 4, 8, 12 (each needs block + 1 tokens)
    x, y = windows.gather(torch.tensor([4]))
    assert x.tolist() == [[4, 5, 6, 7]] and y.tolist() == [[5, 6, 7, 8]]


def test_last_target_windows_are_many_to_one():
    ids = torch.arange(100)
    windows = TokenWindows(ids, block_size=40, stride=3, target="last")
    x, y = windows.gather(torch.tensor([3]))
    assert x[0, 0] == 3 and x[0, -1] == 42
    assert (y[0, :-1] == IGNORE).all() and y[0, -1] == 43


def test_epoch_order_depends_only_on_seed_and_skip_resumes_it():
    windows = TokenWindows(torch.arange(500), block_size=8, stride=8)
    full = [x for x, _ in windows.epoch(4, seed=7)]
    again = [x for x, _ in windows.epoch(4, seed=7)]
    assert all(torch.equal(a, b) for a, b in zip(full, again))
    assert not torch.equal(full[0], next(iter(windows.epoch(4, seed=8)))[0])
    tail = [x for x, _ in windows.epoch(4, seed=7, skip=3)]
    assert all(torch.equal(a, b) for a, b in zip(full[3:], tail)) and len(tail) == len(full) - 3
    covered = torch.cat([x[:, 0] for x in full]).sort().values
    assert torch.equal(covered, windows.starts)


@pytest.mark.parametrize("n", [2, 9, 33, 64, 65])
def test_eval_batches_score_every_token_once(n):
    ids = torch.arange(1000, 1000 + n)
    targets = torch.cat([y[y != IGNORE] for _, y in eval_batches(ids, block_size=8, target="every", batch_size=3)])
    assert targets.tolist() == ids[1:].tolist()
    last = [y[y != IGNORE] for _, y in eval_batches(torch.arange(50), 8, "last", 7)]
    assert torch.cat(last).tolist() == list(range(8, 50))


def test_too_short_text_is_refused():
    with pytest.raises(TinyLMError, match="fewer than one window"):
        TokenWindows(torch.arange(10), block_size=16, stride=16)


def test_line_mode_split_keeps_lines_whole():
    from tinylm.data import split_lines

    text = "".join(f"title number {i}\n" for i in range(100))
    train, val = split_lines(text, 0.1)
    assert train + val == text
    assert train.endswith("\n") and val.startswith("title number")
    assert 8 <= len(val.splitlines()) <= 11


def test_line_samples_pad_and_mask():
    import tinylm
    from tinylm.data import evaluation_examples, training_examples
    from tinylm.tokenizers import TokenizerConfig, build_tokenizer

    text = "ab\nabcd\n\nb\n"
    tok = build_tokenizer(TokenizerConfig("char"), text)
    data = tinylm.DataConfig(source="x", lines=True, block_size=4)
    samples = training_examples(tok, text, data)
    assert len(samples) == 3  # the empty line is not a sample
    batches = list(samples.epoch(batch_size=3, seed=0))
    assert len(batches) == 1
    x, y = batches[0]
    rows = {tuple(t for t in row.tolist() if t != IGNORE) for row in y}
    eos = tok.eos_id
    # each line is <eos> line <eos>; "abcd" (6 tokens with both <eos>) is cut to block_size + 1 = 5
    assert rows == {(*tok.encode("ab"), eos), (*tok.encode("abcd"),), (*tok.encode("b"), eos)}
    assert (x[:, 0] == eos).all()
    assert x.shape == y.shape == (3, 4)
    assert torch.equal(y == IGNORE, x == tok.pad_id)  # padding is exactly where targets are ignored
    evaluation = evaluation_examples(tok, text, data)
    scored = sum(int((yb != IGNORE).sum()) for _, yb in evaluation.batches(2))
    assert scored == evaluation.tokens == 3 + 4 + 2
    assert evaluation.truncated == 1 and evaluation.chars == len("ab\nabcd\nb\n")


@pytest.mark.parametrize("n,streams,chunk", [(100, 3, 7), (101, 8, 512), (10, 20, 4), (2, 1, 1)])
def test_stream_batches_score_every_token_once_and_continue_each_row(n, streams, chunk):
    import numpy as np

    ids = torch.arange(n)
    batches = list(stream_batches(ids, streams, chunk))
    inputs = [int(x) for b in batches for x, t in zip(b[0].flatten(), b[1].flatten()) if t != IGNORE]
    targets = [int(t) for b in batches for t in b[1].flatten() if t != IGNORE]
    assert sorted(inputs) == list(range(n - 1))  # each position scored exactly once
    assert all(t == x + 1 for x, t in zip(inputs, targets))  # and against the token that follows it
    for (x0, y0), (x1, _) in zip(batches, batches[1:]):  # row s of a batch continues row s of the one before
        live = y0[:, -1] != IGNORE
        assert torch.equal(x1[live, 0], x0[live, -1] + 1)
    # a (memory-mapped) numpy array gives the same batches
    as_numpy = list(stream_batches(np.arange(n, dtype=np.uint16), streams, chunk))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, as_numpy))


def test_stateful_epoch_rows_continue_contiguous_streams():
    windows = TokenWindows(torch.arange(1000), block_size=10, stride=10)
    batches = list(windows.stream_epoch(batch_size=4, seed=3))
    assert len(batches) == windows.num_stream_batches(4) == (1000 - 10) // 4 // 10
    for x, y in batches:
        assert torch.equal(y, x + 1) and x.shape == (4, 10)
    for (x0, _), (x1, _) in zip(batches, batches[1:]):
        assert torch.equal(x1[:, 0], x0[:, -1] + 1)  # row s goes on where it stopped
    starts = [int(x[0, 0]) for x, _ in (next(windows.stream_epoch(4, seed=s)) for s in range(20))]
    assert len(set(starts)) > 1 and all(0 <= s < 10 for s in starts)  # a new offset each epoch
    # two ranks split the streams between them; skip replays a resumed epoch
    rank0, rank1 = (list(windows.stream_epoch(2, seed=3, rank=r, world=2)) for r in (0, 1))
    assert torch.equal(torch.cat([rank0[0][0], rank1[0][0]]).sort(0).values, batches[0][0].sort(0).values)
    assert torch.equal(list(windows.stream_epoch(4, seed=3, skip=5))[0][0], batches[5][0])


def test_many_to_one_evaluation_uses_the_training_stride():
    """--target last validates on windows like its training windows (every `stride`-th token): the same measure
    at a third of the cost for the exercise's step 3."""
    last = [y[y != IGNORE] for _, y in eval_batches(torch.arange(50), 8, "last", 4, stride=3)]
    assert torch.cat(last).tolist() == list(range(8, 50, 3))
    from tinylm.config import DataConfig
    from tinylm.data import evaluation_examples
    from tinylm.tokenizers import TokenizerConfig, build_tokenizer

    text = "the quick brown fox jumps over the lazy dog. " * 20
    tokenizer = build_tokenizer(TokenizerConfig(), text)
    examples = evaluation_examples(tokenizer, text, DataConfig(target="last", block_size=40, stride=3))
    scored = sum(int((y != IGNORE).sum()) for _, y in examples.batches(64))
    assert scored == len(range(40, len(text), 3))


# -- the course's corpora: AG News titles, Goethe's Faust; text in Unicode NFC ----------------------------------
def test_ag_news_titles_one_per_line_from_the_csv(data_dir, monkeypatch):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(data_dir))
    titles = load_corpus("agnews:test").train.splitlines()
    assert len(titles) == 7_600 and titles[0] == "Fears for T N pension after talks"
    assert all(t and t == t.strip() for t in titles)
    with pytest.raises(TinyLMError, match="--data agnews:test"):  # offline: only the test split is at hand
        load_corpus("agnews")
    assert sources.ag_news_titles('"3","A ""quoted"" title","x"\n"1","Two\\nlines","y"\n') == \
        'A "quoted" title\nTwo lines\n'


def test_an_ag_news_download_is_checked_by_md5_and_rows(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYLM_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path / "nothing"))
    rows = "".join(f'"1","Title {i}","Description {i}"\n' for i in range(5))
    csv_file = tmp_path / "test.csv"
    csv_file.write_text(rows, encoding="utf-8")
    md5 = hashlib.md5(rows.encode()).hexdigest()
    spec = sources.BUILTIN_CORPORA["agnews"]["test"]
    for expected_md5, expected_rows, ok in ((md5, 5, True), (md5, 7_600, False), ("0" * 32, 5, False)):
        cached = sources.cache_dir() / "data" / spec.relpath
        cached.unlink(missing_ok=True)
        monkeypatch.setitem(sources.BUILTIN_CORPORA, "agnews", {"test": sources.CorpusFile(
            spec.relpath, csv_file.as_uri(), None, md5=expected_md5, rows=expected_rows, text_of=spec.text_of)})
        if ok:
            assert load_corpus("agnews:test").train.splitlines() == [f"Title {i}" for i in range(5)]
            assert cached.is_file()
        else:
            with pytest.raises(TinyLMError, match="failed verification"):
                load_corpus("agnews:test")
            assert not cached.exists()


def test_agnews_trains_in_line_mode_unless_told_otherwise(data_dir, monkeypatch):
    from tinylm import DataConfig

    monkeypatch.setenv("TINYLM_DATA_DIR", str(data_dir))
    assert DataConfig(source="agnews:test").lines is True
    assert DataConfig(source="agnews:test", lines=False).lines is False
    assert DataConfig(source="faust").lines is False and DataConfig(source="shakespeare").lines is False


def test_faust_offline_and_built_from_gutenberg_online(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(data_dir))
    faust = load_corpus("faust").train
    assert faust.startswith("Faust: Der Tragödie erster Teil") and len(faust) == 474_702
    assert unicodedata.is_normalized("NFC", faust)
    # Online with no copy at hand: the two plays come from Project Gutenberg (here from a stand-in cache) and are
    # joined without their licence text.
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TINYLM_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    header = "*** START OF THE PROJECT GUTENBERG EBOOK FAUST ***\n"
    footer = "*** END OF THE PROJECT GUTENBERG EBOOK FAUST ***\nlicence text\n"
    for book, body in (("2229", "Faust. Der Tragödie erster Teil\n" + "Habe nun, ach! Philosophie,\n" * 8000),
                       ("2230", "Faust. Der Tragödie zweiter Teil\n" + "Die Sonne tönt nach alter Weise\n" * 8000)):
        path = tmp_path / "data" / "gutenberg" / f"pg{book}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("The Project Gutenberg eBook\n" + header + unicodedata.normalize("NFD", body) + footer,
                        encoding="utf-8")
    built = load_corpus("faust").train
    assert built.startswith("Faust. Der Tragödie erster Teil") and "licence text" not in built
    assert "\n\nFaust. Der Tragödie zweiter Teil" in built and unicodedata.is_normalized("NFC", built)
    assert (sources.cache_dir() / "data" / "faust" / "input.txt").is_file()  # built once, then cached


def test_text_and_prompts_are_read_in_nfc(tmp_path, trained_run):
    decomposed = unicodedata.normalize("NFD", "Grüße aus Köln, schöne Straße. ") * 5000
    path = tmp_path / "text.txt"
    path.write_text(decomposed, encoding="utf-8")
    read = load_corpus(str(path)).train
    assert read == unicodedata.normalize("NFC", decomposed) and "ü" in read
    pieces = [decomposed[i:i + 7] for i in range(0, len(decomposed), 7)]  # cuts between a letter and its accent
    assert "".join(sources.nfc_pieces(pieces)) == read
    composed, split = "Über", unicodedata.normalize("NFD", "Über")
    assert trained_run.prompt_ids(split, warn=False) == trained_run.prompt_ids(composed, warn=False)
    assert trained_run.generate(split, max_new_tokens=3, seed=1) == trained_run.generate(composed, max_new_tokens=3,
                                                                                          seed=1)


def test_the_cli_trains_agnews_in_line_mode_without_the_presets_state_carry(data_dir, monkeypatch):
    from tinylm.cli import build_parser
    from tinylm.cli.train import config_from_args

    monkeypatch.setenv("TINYLM_DATA_DIR", str(data_dir))
    config = config_from_args(build_parser().parse_args(["train", "--data", "agnews:test"]))
    assert config.data.lines is True and config.train.stateful is False
    config = config_from_args(build_parser().parse_args(["train", "--data", "agnews:test", "--no-lines"]))
    assert config.data.lines is False and config.train.stateful is True  # the default preset's own recipe
