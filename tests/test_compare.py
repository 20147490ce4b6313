"""`tinylm compare`: several models on one corpus, split and time budget (tinylm/lab/compare.py)."""

from __future__ import annotations

import csv
import statistics
import subprocess
import sys

import pytest
from conftest import tiny_config

import tinylm
from tinylm.errors import TinyLMError
from tinylm.lab.compare import parse_models
from tinylm.models import MODEL_NAMES

# gpt is compared too once its family is registered
MODELS = ["markov", "lstm", "gru"] + (["gpt"] if "gpt" in MODEL_NAMES else [])


def test_model_names_are_checked():
    assert parse_models(" markov, lstm ") == ["markov", "lstm"]
    bad_names = [("", "at least one"), ("markov,lstm,markov", "twice"), ("lstm,transformer-xl", "unknown")]
    for bad, message in bad_names:
        with pytest.raises(TinyLMError, match=message):
            parse_models(bad)


def test_compare_trains_each_model_on_the_same_split_and_budget(small_corpus, tmp_path):
    out = tmp_path / "compare"
    template = tiny_config(small_corpus)
    tiny = {"embed": 16, "hidden": 48, "layers": 1, "heads": 2, "order": 4}  # each model takes its own fields
    rows = tinylm.compare(MODELS, budget_seconds=0.5, out=out, config=template, model_settings=tiny,
                          prompt="ROMEO:", samples=2, max_new_tokens=80, progress=False, echo=lambda s: None)
    assert [r.model for r in rows] == MODELS
    for row in rows:
        run = tinylm.load(row.run_dir)
        assert run.config.data == template.data  # same corpus, split and windows
        assert run.config.train.time_budget == 0.5
        assert row.parameters == run.num_parameters() > 0
        scores = run.evaluate()  # the table's figures are the saved model's, on the validation split
        assert row.val_loss == pytest.approx(scores.loss, abs=1e-4)
        assert row.bits_per_char == pytest.approx(scores.bits_per_char, abs=1e-4)
        assert row.sample.startswith("ROMEO:") and row.tokens_per_s > 0
        assert row.novel_4grams is None or 0 <= row.novel_4grams <= 1
    trainable = [r for r in rows if r.model != "markov"]
    assert all(r.train_seconds < 5 for r in trainable)  # the budget stopped them
    with open(out / "compare.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [t["model"] for t in table] == MODELS
    assert {"parameters", "train_seconds", "tokens_per_s", "val_loss", "bits_per_char", "perplexity",
            "longest_copy", "novel_4grams"} <= table[0].keys()
    markdown = (out / "compare.md").read_text()
    assert "| model |" in markdown and "### markov" in markdown and "compare.png" in markdown
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_over_seeds_reports_the_median_the_spread_and_each_seed(small_corpus, tmp_path):
    out = tmp_path / "compare"
    template = tiny_config(small_corpus, epochs=1, seed=11)
    rows = tinylm.compare(["lstm", "markov"], budget_seconds=None, out=out, config=template, seeds=3,
                          model_settings={"embed": 16, "hidden": 48, "layers": 1, "order": 3}, prompt="ROMEO:",
                          samples=1, max_new_tokens=40, progress=False, echo=lambda s: None)
    lstm = rows[0]
    assert lstm.seeds == [11, 12, 13]
    runs = {seed: tinylm.load(out / "runs" / f"lstm-seed{seed}") for seed in lstm.seeds}
    assert [run.config.train.seed for run in runs.values()] == lstm.seeds
    assert lstm.val_losses == [min(r["val_loss"] for r in runs[seed].metrics) for seed in lstm.seeds]
    assert len(set(lstm.val_losses)) == 3  # the seeds trained different models
    assert lstm.val_loss == sorted(lstm.val_losses)[1] and lstm.val_loss_worst == max(lstm.val_losses)
    assert lstm.val_loss_std == pytest.approx(statistics.stdev(lstm.val_losses))
    assert tinylm.load(lstm.run_dir).config.train.seed == lstm.run_seed  # the median seed's run
    assert min(r["val_loss"] for r in tinylm.load(lstm.run_dir).metrics) == lstm.val_loss
    with open(out / "compare.csv", newline="") as f:
        table = {t["model"]: t for t in csv.DictReader(f)}
    assert table["lstm"]["seeds"] == "11-13"
    assert table["lstm"]["val_loss_spread"].startswith(f"{min(lstm.val_losses):.4f} - {max(lstm.val_losses):.4f}")
    markdown = (out / "compare.md").read_text()
    assert "once per seed (11-13)" in markdown and f"### lstm (seed {lstm.run_seed}, the median run)" in markdown


def test_one_seed_is_named_beside_the_loss(small_corpus, tmp_path):
    rows = tinylm.compare(["markov"], budget_seconds=None, out=tmp_path / "c", config=tiny_config(small_corpus),
                          model_settings={"order": 3}, samples=1, max_new_tokens=20, progress=False,
                          echo=lambda s: None)
    assert rows[0].seeds == [1337] and rows[0].val_loss_std is None
    markdown = (tmp_path / "c" / "compare.md").read_text()
    assert "Seed 1337: another seed moves the validation loss" in markdown
    with pytest.raises(TinyLMError, match="--seeds takes a count"):
        tinylm.compare(["markov"], out=tmp_path / "d", config=tiny_config(small_corpus), seeds="3-1",
                       progress=False, echo=lambda s: None)
    assert not (tmp_path / "d").exists()  # refused before anything is read or written


def test_cli_compare_rejects_an_unknown_model_in_one_line():
    result = subprocess.run([sys.executable, "-m", "tinylm", "compare", "--models", "markov,nope"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "unknown model 'nope'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
