"""tinylm.course: each check accepts a correct solution, names what a wrong one gets wrong (in German, with a hint),
reports a placeholder as not done yet, turns an error in the student's code into a finding, and gives the notebook
tinylm's version to go on with while a part is open.

The correct solutions here are the smallest that pass; the notebooks' Lösungen are checked end to end in
test_notebooks.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tinylm import course
from tinylm.course import news_titles, project, shakespeare
from tinylm.course.checking import evaluate


def status(name, value, **context) -> tuple[str, str]:
    report = evaluate(name, value, **context)
    return report.status, report.text()


# -- the framework ------------------------------------------------------------------------------------------
def test_a_placeholder_is_not_done_yet_and_the_notebook_goes_on_with_tinylms_version(capsys):
    class Placeholder(torch.utils.data.Dataset):
        def __init__(self, data_dir, maxlen=40, step=3):
            raise NotImplementedError("noch nicht bearbeitet")

    assert status("char_dataset", Placeholder)[0] == "open"
    assert course.check("char_dataset", Placeholder) is shakespeare.CharDataset
    out = capsys.readouterr().out
    assert out.startswith("… Aufgabe d – CharDataset: noch nicht bearbeitet. Tipp: ") and "tinylms Version" in out
    for placeholder in (None, ..., (None, None)):
        assert status("char_maps", placeholder, text="abc")[0] == "open"


def test_an_error_in_the_students_code_is_a_finding_with_its_line():
    def tempered_softmax(preds, T):
        return preds / undefined_name  # noqa: F821 - the student's mistake

    state, text = status("tempered_softmax", tempered_softmax)
    assert state == "wrong" and "NameError" in text and "undefined_name" in text and "Tipp:" in text


def test_a_correct_part_is_what_the_notebook_goes_on_with(capsys):
    solution = shakespeare.CharDataset  # tinylm's version is a correct solution
    assert course.check("char_dataset", solution) is solution
    assert capsys.readouterr().out.startswith("✓ Aufgabe d – CharDataset: richtig")


def test_every_task_has_a_german_title_and_hint():
    assert len(course.tasks()) == 20
    for name, task in course.checking.TASKS.items():
        assert task.title and task.hint and not task.hint.endswith("."), name


# -- 000: the first LSTM ----------------------------------------------------------------------------------------
def test_vocabulary_and_sequences():
    text = "hallo pytorch"
    chars = sorted(set(text))
    char2idx = {c: i for i, c in enumerate(chars)}
    idx2char = dict(enumerate(chars))
    assert status("vocabulary", (chars, char2idx, idx2char), text=text)[0] == "ok"
    state, report = status("vocabulary", (list(set(text)), char2idx, idx2char), text=text)
    assert state == "wrong" or list(set(text)) == chars, report
    ids = [char2idx[c] for c in text]
    good = (torch.tensor(ids[:-1])[None], torch.tensor(ids[1:])[None])
    assert status("sequences", good, text=text, char2idx=char2idx)[0] == "ok"
    state, report = status("sequences", (good[1], good[0]), text=text, char2idx=char2idx)
    assert state == "wrong" and "um eins verschoben" in report


def test_lstm_model_and_training():
    assert status("lstm_model", course.characters.SimpleLSTMLanguageModel, vocab_size=10)[0] == "ok"

    class TwoLayers(course.characters.SimpleLSTMLanguageModel):
        def __init__(self, vocab_size, embedding_dim, hidden_dim):
            super().__init__(vocab_size, embedding_dim, hidden_dim)
            self.lstm = nn.LSTM(embedding_dim, hidden_dim, num_layers=2, batch_first=True)

    state, report = status("lstm_model", TwoLayers, vocab_size=10)
    assert state == "wrong" and "Parameter" in report
    assert status("training", [2.3 - i * 0.02 for i in range(100)])[0] == "ok"
    assert status("training", [2.3] * 100)[0] == "wrong"  # a loop that never steps
    assert status("training", [])[0] == "open"


# -- 004: Shakespeare in Lightning --------------------------------------------------------------------------------
def test_char_dataset_catches_a_window_too_many():
    class OneTooMany(shakespeare.CharDataset):
        def __init__(self, data_dir, maxlen=40, step=3):
            text = Path(data_dir).read_text(encoding="utf-8")
            self.char2idx = {c: i for i, c in enumerate(sorted(set(text)))}
            self.sequences = [text[i:i + maxlen] for i in range(0, len(text) - maxlen + 1, step)]
            self.next_chars = [text[i + maxlen] if i + maxlen < len(text) else " " for i in
                               range(0, len(text) - maxlen + 1, step)]

    state, report = status("char_dataset", OneTooMany)
    assert state == "wrong" and "range(0, len(text) - maxlen, step)" in report


def test_lit_char_rnn():
    pytest.importorskip("lightning")
    reference = shakespeare.reference_lit_char_rnn()
    assert status("lit_char_rnn", reference)[0] == "ok"

    class NoHiddenLayer(reference):
        def __init__(self, vocab_size, embed_dim=64, hidden_size=128, dropout=0.2, lr=5e-3):
            super().__init__(vocab_size, embed_dim, hidden_size, dropout, lr=1e-3)

    state, report = status("lit_char_rnn", NoHiddenLayer)
    assert state == "wrong" and "lr 0.001" in report


def test_tempered_softmax():
    assert status("tempered_softmax", shakespeare.reference_tempered_softmax)[0] == "ok"

    def ignores_t(preds, T):
        z = np.exp(np.asarray(preds) - np.max(preds))
        return z / z.sum()

    def overflows(preds, T):
        z = np.exp(np.asarray(preds, dtype=np.float64) / T)
        return z / z.sum()

    state, report = status("tempered_softmax", ignores_t)
    assert state == "wrong" and "✗ T = 0.5" in report
    with np.errstate(over="ignore", invalid="ignore"):
        state, report = status("tempered_softmax", overflows)
    assert state == "wrong" and "✗ große Werte" in report and "Maximum" in report


def test_early_stopping():
    pytest.importorskip("lightning")
    from lightning.pytorch.callbacks import EarlyStopping

    assert status("early_stopping", EarlyStopping(monitor="val_loss", patience=5))[0] == "ok"
    state, report = status("early_stopping", EarlyStopping(monitor="val_loss", patience=3))
    assert state == "wrong" and "patience 3" in report


def test_generate_text_uses_the_temperature():
    class Fixed(nn.Module):
        def forward(self, x):
            return torch.log(torch.tensor([[0.5, 0.3, 0.2]])).expand(x.size(0), 3)

    char2idx = {"a": 0, "b": 1, "c": 2}
    generate = shakespeare.reference_generate(char2idx)
    assert status("generate_text", generate, model=Fixed(), char2idx=char2idx, seed_text="ab")[0] == "ok"

    def greedy(model, seed_text, length=200, temperature=1.0):
        return seed_text + "a" * length

    state, report = status("generate_text", greedy, model=Fixed(), char2idx=char2idx, seed_text="ab")
    assert state == "wrong" and "Temperatur" in report


# -- 002: news titles in Keras ------------------------------------------------------------------------------------
TITLES = ["Stocks rise (AP)", "Oil falls again", "Team wins the cup"]


def test_char_index_numbers_by_frequency_like_the_keras_tokenizer():
    index = news_titles.char_index(TITLES)
    assert index[" "] == 1 and index["<eos>"] == len(index) and min(index.values()) == 1
    assert status("char_index", index, titles=TITLES)[0] == "ok"
    alphabetical = {c: i + 1 for i, c in enumerate(sorted(set("".join(TITLES))))}
    alphabetical["<eos>"] = len(alphabetical) + 1
    state, report = status("char_index", alphabetical, titles=TITLES)
    assert state == "wrong" and "Häufigkeit" in report


def test_title_batch_wants_zero_vectors_where_it_pads():
    index = news_titles.char_index(TITLES)

    def one_hot_of_zero(batch):  # the lesson's tf.one_hot(0): a 1 at index 0, which Masking does not skip
        x, y = news_titles.title_batch(batch, index)
        x[~x.any(axis=-1), 0] = 1.0
        return x, y

    assert status("title_batch", lambda batch: news_titles.title_batch(batch, index), titles=TITLES,
                  index=index)[0] == "ok"
    state, report = status("title_batch", one_hot_of_zero, titles=TITLES, index=index)
    assert state == "wrong" and "Nullvektoren" in report


def test_keras_model_and_generation():
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("keras runs another backend in this process")
    index = news_titles.char_index(TITLES)
    vocab_size = len(index) + 1

    def build(units):
        return keras.Sequential([keras.Input((None, vocab_size)), keras.layers.Masking(),
                                 keras.layers.LSTM(units, return_sequences=True),
                                 keras.layers.Dense(vocab_size, activation="softmax")])

    assert status("keras_model", build(128), vocab_size=vocab_size)[0] == "ok"
    state, report = status("keras_model", build(64), vocab_size=vocab_size)
    assert state == "wrong" and "LSTM(128)" in report
    reverse = {i: c for c, i in index.items()}

    def generate_soft(model, size=100, start="Today ", temperature=1.0, never_padding=True):
        chars = [index[c] for c in start if c in index]
        for _ in range(size):
            probs = np.asarray(model(np.zeros((1, len(chars), vocab_size)))[0, -1], dtype=np.float64)
            probs = np.exp(np.log(np.maximum(probs, 1e-12)) / temperature)
            if never_padding:
                probs[0] = 0.0
            probs /= probs.sum()
            nxt = int(np.argmax(np.random.multinomial(1, probs)))
            if nxt == index["<eos>"]:
                break
            chars.append(nxt)
        return "".join(reverse[i] for i in chars)

    state, report = status("generate_soft", generate_soft, index=index)
    assert state == "ok", report
    state, report = status("generate_soft", lambda *a, **k: generate_soft(*a, **k, never_padding=False),
                           index=index)
    assert state == "wrong" and "KeyError" in report  # the lesson's own bug, caught


# -- 003: patterns and sampling ---------------------------------------------------------------------------------
def test_rnn_patterns_and_sampling():
    from tinylm.course.patterns import reference_patterns

    functions = {name: (lambda name: lambda linear, lstm, x, *steps: reference_patterns(
        linear, lstm, x, steps[0] if steps else 4)[name])(name)
        for name in ("one_to_one", "one_to_many", "many_to_one", "many_to_many")}
    assert status("rnn_patterns", functions)[0] == "ok"
    wrong = {**functions, "many_to_one": lambda linear, lstm, x: lstm(x)[0][:, 0]}
    state, report = status("rnn_patterns", wrong)
    assert state == "wrong" and "outputs[:, -1]" in report

    def sample_next(logits, temperature, generator):
        return int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator))

    assert status("sample_next", sample_next)[0] == "ok"
    state, report = status("sample_next", lambda logits, t, g: int(torch.argmax(logits)))
    assert state == "wrong" and "nicht argmax" in report


# -- 001: the final project ---------------------------------------------------------------------------------------
class TinyDecoder(nn.Module):
    def __init__(self, vocab_size=50, block_size=16, embed=32, causal=True, width=None):
        super().__init__()
        self.causal = causal
        self.tokens = nn.Embedding(vocab_size, width or embed)
        self.positions = nn.Embedding(block_size, width or embed)
        layer = nn.TransformerEncoderLayer(width or embed, 2, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(width or embed, vocab_size)

    def forward(self, ids):
        length = ids.size(1)
        x = self.tokens(ids) + self.positions(torch.arange(length))
        mask = nn.Transformer.generate_square_subsequent_mask(length) if self.causal else None
        return self.head(self.blocks(x, mask=mask, is_causal=self.causal))


def test_decoder_model_is_causal_and_small():
    assert status("decoder_model", TinyDecoder(), vocab_size=50, block_size=16)[0] == "ok"
    state, report = status("decoder_model", TinyDecoder(causal=False), vocab_size=50, block_size=16)
    assert state == "wrong" and "✗ kausal" in report
    state, report = status("decoder_model", TinyDecoder(vocab_size=5000, width=200), vocab_size=5000, block_size=16)
    assert state == "wrong" and "Grenze" in report


def test_training_history_must_fall_for_three_epochs():
    falling = [{"epoch": i, "train_loss": 3 - i * 0.2, "val_loss": 3.1 - i * 0.2} for i in range(1, 4)]
    assert status("training_history", falling)[0] == "ok"
    rising = [{**r, "val_loss": 2 + r["epoch"] * 0.1} for r in falling]
    assert status("training_history", rising)[0] == "wrong"
    assert status("training_history", falling[:2])[0] == "wrong"
    assert status("training_history", [])[0] == "open"


def test_the_project_folder_holds_weights_tokenizer_and_a_card_with_description_and_tags(tmp_path, data_dir):
    pytest.importorskip("transformers")
    from huggingface_hub import ModelCard
    from transformers import AutoTokenizer

    text = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:20_000]
    tokenizer = project.make_tokenizer(text, tmp_path / "tok", vocab_size=300)
    assert len(AutoTokenizer.from_pretrained(tmp_path / "tok")) == len(tokenizer) == 300
    ids = project.encode(tokenizer, text)
    model = TinyDecoder(vocab_size=len(tokenizer))
    loss = project.evaluate(model, ids[:2000], block_size=16)
    assert abs(loss - np.log(len(tokenizer))) < 1.5  # an untrained model: about log(vocabulary)
    history = [{"epoch": 1, "train_loss": 5.0, "val_loss": loss}]
    folder = project.save(model, tokenizer, tmp_path / "abgabe", history, description="Ein kleines Modell.",
                          tags=["shakespeare", "kursprojekt"])
    card = ModelCard.load(folder / "README.md")
    assert card.data.tags == ["shakespeare", "kursprojekt"] and "Ein kleines Modell." in card.text
    assert {"model.safetensors", "tokenizer.json", "history.json"} <= {p.name for p in folder.iterdir()}
    assert project.push(folder) == str(folder)  # no repo: nothing uploaded, the folder is ready
