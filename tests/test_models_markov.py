"""The n-gram model (tinylm/models/markov.py): exact probabilities, a real distribution, counts saved and
loaded like any run, and a loss in the range of a neural model's on the same split."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file, save_file

import tinylm
from tinylm.cli import build_parser
from tinylm.cli.train import config_from_args
from tinylm.errors import TinyLMError
from tinylm.models import build_model, model_config
from tinylm.models.markov import _discounts

QUIET = {"progress": False, "echo": lambda s: None}


def fitted(tokens, vocab, order, smoothing="kneser-ney"):
    model = build_model(model_config("markov", vocab_size=vocab, order=order, smoothing=smoothing)).eval()
    model.fit(torch.tensor(tokens))
    return model


def reference_probs(tokens, vocab, order, smoothing, context):
    """The textbook interpolated model, written directly from dictionaries of n-gram counts."""
    raw = {k: Counter(tuple(tokens[i : i + k]) for i in range(len(tokens) - k + 1))
           for k in range(1, order + 1)}
    counts = dict(raw)
    if smoothing == "kneser-ney":  # lower orders: in how many distinct contexts a k-gram follows
        for k in range(1, order):
            counts[k] = Counter(gram[1:] for gram in raw[k + 1])
        discounts = {k: _discounts(torch.tensor(list(counts[k].values()))) for k in counts}

    def prob(k, history, w):
        if k == 0:
            return 1 / vocab
        lower = prob(k - 1, history[1:], w)
        followers = {g[-1]: c for g, c in counts[k].items() if g[:-1] == history}
        if smoothing == "kneser-ney":
            def discount(c):
                return discounts[k][min(c, 3) - 1] if c else 0.0

            total, mass = sum(followers.values()), sum(map(discount, followers.values()))
            a = followers.get(w, 0) - discount(followers.get(w, 0))
        else:
            mass = len(followers)
            total, a = sum(followers.values()) + mass, followers.get(w, 0)
        return (a + mass * lower) / total if total else lower

    history = tuple(context[-(order - 1):]) if order > 1 else ()
    return [prob(len(history) + 1, history, w) for w in range(vocab)]


@pytest.mark.parametrize("smoothing", ["kneser-ney", "witten-bell"])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_probabilities_equal_the_textbook_formula(smoothing, order):
    torch.manual_seed(order)
    vocab = 6
    tokens = torch.randint(0, vocab - 1, (300,)).tolist()  # the last token is never seen
    model = fitted(tokens, vocab, order, smoothing)
    seq = torch.randint(0, vocab, (1, 10))
    probs = model(seq)[0][0].double().exp()
    for t in range(10):  # includes the first positions, whose history is shorter than order - 1
        context = seq[0, max(0, t - order + 2) : t + 1].tolist()
        expected = reference_probs(tokens, vocab, order, smoothing, context)
        expected = torch.tensor(expected, dtype=torch.float64)
        torch.testing.assert_close(probs[t], expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("smoothing", ["kneser-ney", "witten-bell"])
def test_every_prediction_is_a_distribution_with_mass_for_unseen_tokens(smoothing):
    torch.manual_seed(0)
    model = fitted(torch.randint(0, 40, (3000,)).tolist(), 50, 4, smoothing)  # tokens 40..49 never seen
    probs = model(torch.randint(0, 50, (4, 33)))[0].double().exp()
    torch.testing.assert_close(probs.sum(-1), torch.ones(4, 33, dtype=torch.float64), rtol=0, atol=1e-5)
    assert (probs > 0).all()


def test_an_order_n_model_predicts_a_deterministic_text():
    text = list(range(8)) * 60  # each token determines the next
    model = fitted(text, 10, 3)
    logits, _ = model(torch.tensor([text[:40]]))
    assert logits[0, :-1].argmax(-1).tolist() == text[1:40]
    # from the second position on, the model has its n-1 = 2 tokens of context
    predicted = logits[0, 1:-1].exp().gather(1, torch.tensor(text[2:40])[:, None])
    assert (predicted > 0.97).all()


def test_an_unfitted_model_is_uniform():
    model = build_model(model_config("markov", vocab_size=7, order=3))
    logits, state = model(torch.tensor([[1, 2, 3]]))
    torch.testing.assert_close(logits.exp(), torch.full((1, 3, 7), 1 / 7))
    assert state.tolist() == [[2, 3]]


def test_a_word_level_vocabulary_costs_memory_per_ngram_not_per_vocabulary_power():
    torch.manual_seed(0)
    vocab, tokens = 30_000, torch.randint(0, 30_000, (20_000,))
    model = fitted(tokens.tolist(), vocab, 3)
    stored = sum(t.numel() for t in model.state_dict().values())
    # at most a key and a count per position and order above 1; a dense order-3 table holds 2.7e13 numbers
    assert stored <= vocab + 2 * 2 * tokens.numel() + 3 * 3
    probs = model(tokens[:6][None])[0].double().exp()
    assert probs.shape == (1, 6, vocab)
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 6, dtype=torch.float64), rtol=0, atol=1e-5)


def test_bad_settings_are_user_errors():
    with pytest.raises(TinyLMError, match="--order"):
        model_config("markov", order=0)
    with pytest.raises(TinyLMError, match="smoothing"):
        model_config("markov", smoothing="stupid-backoff")


def test_order_and_tokenizer_flags_reach_the_config():
    args = build_parser().parse_args(["train", "--model", "markov", "--order", "3", "--tokenizer", "word"])
    config = config_from_args(args)
    assert config.model.order == 3 and config.tokenizer.kind == "word"


@pytest.fixture(scope="module")
def markov_run(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("markov")
    corpus = folder / "corpus.txt"
    corpus.write_text((data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:40_000],
                      encoding="utf-8")
    config = tiny_config(corpus, model="markov")
    config.model.order = 4
    return tinylm.train(config, out=folder / "run", **QUIET)


def test_a_trained_run_reloads_and_scores_the_same(markov_run):
    run_dir = markov_run.run_dir
    assert json.loads((run_dir / "config.json").read_text())["model"]["order"] == 4
    assert {"keys2", "counts2", "keys4", "counts4"} <= load_file(run_dir / "model.safetensors").keys()
    loaded = tinylm.load(run_dir)
    ids = torch.tensor([markov_run.tokenizer.encode("ROMEO: What, ho!")])
    torch.testing.assert_close(loaded.module(ids)[0], markov_run.module(ids)[0])
    assert loaded.evaluate().loss == pytest.approx(markov_run.metrics[-1]["val_loss"], abs=1e-5)
    sample = loaded.generate("ROMEO:", max_new_tokens=60, temperature=0.8, seed=3)
    assert sample == loaded.generate("ROMEO:", max_new_tokens=60, temperature=0.8, seed=3)
    assert len(sample) > len("ROMEO:") + 20


def test_a_weights_file_of_another_model_is_refused(markov_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(markov_run.run_dir, copy)
    tensors = load_file(copy / "model.safetensors")
    tensors["counts3"] = tensors["counts3"][:-1]  # a table cut short
    save_file(tensors, str(copy / "model.safetensors"))
    with pytest.raises(TinyLMError, match="does not match"):
        tinylm.load(copy)
    config = json.loads((markov_run.run_dir / "config.json").read_text())
    config["model"]["order"] = 3  # the file holds order-4 tables
    (copy / "config.json").write_text(json.dumps(config))
    shutil.copy(markov_run.run_dir / "model.safetensors", copy / "model.safetensors")
    with pytest.raises(TinyLMError, match="does not match"):
        tinylm.load(copy)


def test_loss_is_in_the_range_of_an_lstm_on_the_same_split(markov_run, trained_run):
    """Both runs hold the same first 40,000 characters and the same split; a real distribution can only
    score this well by predicting, not by leaking probability."""
    markov, lstm = markov_run.metrics[-1]["val_loss"], trained_run.metrics[-1]["val_loss"]
    assert 1.0 < markov < lstm + 0.25


def test_word_level_markov_trains_and_samples(small_corpus, tmp_path):
    config = tiny_config(small_corpus, model="markov")
    config.model.order = 3
    config.tokenizer.kind = "word"
    run = tinylm.train(config, out=tmp_path / "run", **QUIET)
    result = run.evaluate()
    assert 3.0 < result.loss < 9.0 and 0 < result.bits_per_char < 4
    assert len(run.generate("ROMEO:", max_new_tokens=30, seed=1).split()) > 10
