"""Run directories of every earlier format load, sample, evaluate and resume (tinylm/run/migrations.py).

tests/fixtures/runs-v1 holds runs written by tinylm before run directories were versioned (see its README):
each is copied, then used as a user would use it today."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import tinylm
from tinylm.errors import TinyLMError
from tinylm.run import migrations

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "runs-v1"
QUIET = dict(progress=False, echo=lambda line: None)


@pytest.fixture
def old_runs(tmp_path, one_thread) -> Path:
    """A copy of the fixture folder (runs beside their corpus): the committed files are never changed."""
    folder = tmp_path / "runs-v1"
    shutil.copytree(FIXTURES, folder)
    return folder


def test_the_fixtures_are_of_the_old_formats():
    for name in ("lstm-char", "gpt-bpe", "markov-word"):
        assert json.loads((FIXTURES / name / "config.json").read_text())["format_version"] == 1
    for name in ("lstm-char", "gpt-bpe"):
        assert "format_version" not in json.loads((FIXTURES / name / "checkpoint" / "state.json").read_text())
    assert json.loads((FIXTURES / "prepared-char" / "tokens.json").read_text())["version"] == 1


@pytest.mark.parametrize("name", ["lstm-char", "gpt-bpe", "markov-word"])
def test_an_old_run_loads_samples_and_evaluates(old_runs, name):
    run = tinylm.load(old_runs / name)
    text = run.generate("ANNA:", max_new_tokens=20, temperature=0.8, seed=1)
    assert text.startswith("ANNA:") and len(text) > len("ANNA:")
    result = run.evaluate()  # its own validation split, found through the relative data path
    # the best epoch's weights, evaluated as training evaluated them
    best = min(json.loads(line)["val_loss"] for line in (old_runs / name / "metrics.jsonl").read_text().splitlines())
    assert result.loss == pytest.approx(best, rel=1e-4)


@pytest.mark.parametrize("name", ["lstm-char", "gpt-bpe"])
def test_an_old_run_resumes_to_one_more_epoch(old_runs, name):
    run_dir = old_runs / name
    epochs = len((run_dir / "metrics.jsonl").read_text().splitlines())
    run = tinylm.resume(run_dir, epochs=epochs + 1, **QUIET)
    assert [r["epoch"] for r in run.metrics] == list(range(1, epochs + 2))
    assert run.metrics[-1]["val_loss"] < run.metrics[0]["val_loss"]
    # written again in today's formats
    assert json.loads((run_dir / "config.json").read_text())["format_version"] == migrations.CURRENT["config"]
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    assert state["format_version"] == migrations.CURRENT["state"] and state["epoch"] == epochs + 1
    assert tinylm.load(run_dir).generate("BORIS:", max_new_tokens=10, seed=2).startswith("BORIS:")


def test_an_old_counting_run_says_it_cannot_resume(old_runs):
    with pytest.raises(TinyLMError, match="counting model learns in one pass"):
        tinylm.resume(old_runs / "markov-word", epochs=2, **QUIET)


def test_a_budget_run_of_format_1_reads_as_epochs_left_open():
    old = {"format_version": 1, "train": {"epochs": 1_000_000, "time_budget": 60.0}}
    new = migrations.upgrade(migrations.CONFIG_JSON, old, "config.json")
    assert new["train"]["epochs"] is None and new["format_version"] == 2
    assert old["train"]["epochs"] == 1_000_000  # the dict read is not changed
    kept = migrations.upgrade(migrations.CONFIG_JSON, {"format_version": 1, "train": {"epochs": 7}}, "config.json")
    assert kept["train"]["epochs"] == 7


@pytest.mark.parametrize("kind,key", [("config", "format_version"), ("state", "format_version"),
                                      ("tokens", "version")])
def test_newer_and_damaged_versions_are_one_line_errors(kind, key):
    with pytest.raises(TinyLMError, match="newer tinylm"):
        migrations.upgrade(kind, {key: migrations.CURRENT[kind] + 1}, "f.json")
    with pytest.raises(TinyLMError, match="damaged"):
        migrations.upgrade(kind, {key: "1"}, "f.json")


def test_every_version_has_its_upgrade():
    """A format bumped without its upgrade function would leave older files unreadable."""
    for kind, current in migrations.CURRENT.items():
        assert sorted(migrations.UPGRADES[kind]) == list(range(migrations.FIRST_VERSION[kind], current))
