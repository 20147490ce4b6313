"""`tinylm compare`: several models on one corpus, split and time budget (tinylm/lab/compare.py)."""

from __future__ import annotations

import csv
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


def test_cli_compare_rejects_an_unknown_model_in_one_line():
    result = subprocess.run([sys.executable, "-m", "tinylm", "compare", "--models", "markov,nope"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "unknown model 'nope'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
