"""Experiment trackers, read back from their own files: W&B offline runs (the .wandb log and its media
files), TensorBoard event files and the CSV logger, compared with the run's metrics.jsonl / samples.jsonl."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from conftest import tiny_config

import tinylm
from tinylm.io import read_jsonl
from tinylm.run.loggers import WandbRun, loss_keys, make_logger, read_wandb_run, wandb_mode

QUIET = {"progress": False, "echo": lambda s: None}


# -- reading a W&B offline run: tinylm.run.loggers.read_wandb_run reads the .wandb log itself -------------
def wandb_runs(root: Path) -> list[WandbRun]:
    """The runs logged under root/wandb, each once its exit record is on disk (wandb's service writes the log on
    its own thread: run.finish() can return before the file is complete)."""
    return [read_wandb_run(folder, timeout=60.0) for folder in sorted((root / "wandb").glob("offline-run-*"))]


@pytest.fixture
def wandb_dir(tmp_path, monkeypatch) -> Path:
    """W&B writes only under tmp_path, and has no credentials: the logger itself must choose offline."""
    root = tmp_path / "wandb-home"
    for name in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        (root / name).mkdir(parents=True)
        monkeypatch.setenv(name, str(root / name))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # a wrong "online" choice fails, never leaves
    return root / "WANDB_DIR"


# -- W&B ----------------------------------------------------------------------------------------------
def test_wandb_offline_run_holds_steps_epochs_samples_table_and_curve(small_corpus, tmp_path, wandb_dir,
                                                                      capsys):
    config = tiny_config(small_corpus, epochs=3, logger="wandb", wandb_project="tinylm-tests",
                         run_name="tiny")
    run = tinylm.train(config, out=tmp_path / "run", **QUIET)
    run_dir = tmp_path / "run"
    metrics, samples = read_jsonl(run_dir / "metrics.jsonl"), read_jsonl(run_dir / "samples.jsonl")
    summary = json.loads((run_dir / "summary.json").read_text())

    [logged] = wandb_runs(wandb_dir)
    assert f"wandb sync {logged.folder}" in capsys.readouterr().err
    assert (logged.name, logged.project, logged.exit_code) == ("tiny", "tinylm-tests", 0)
    assert logged.config["model"]["hidden"] == 48 and logged.config["train"]["epochs"] == 3
    assert logged.config["info"]["parameters"] == run.num_parameters()

    # Every logged step: the running training loss the loop also keeps in metrics.jsonl's train_curve.
    curve = {step: loss for record in metrics for step, loss in record["train_curve"]}
    steps = {row["_step"]: row for row in logged.history if "train/loss" in row}
    assert sorted(steps) == sorted(curve) and len(curve) > 20
    for step, loss in curve.items():
        assert steps[step]["train/loss"] == pytest.approx(loss, abs=1e-5)
        assert steps[step]["train/lr"] > 0 and steps[step]["train/tokens_per_s"] > 0

    # Every epoch: both losses, perplexity and bits per char, at the step the epoch ended.
    epochs = [row for row in logged.history if "val/loss" in row]
    assert [row["epoch"] for row in epochs] == [1, 2, 3]
    for row, record in zip(epochs, metrics):
        assert row["_step"] == record["step"]
        assert row["train/epoch_loss"] == record["train_loss"] and row["val/loss"] == record["val_loss"]
        assert row["val/perplexity"] == record["val_perplexity"]
        assert row["val/bits_per_char"] == record["val_bits_per_char"]
    assert epochs[-1]["val/loss"] < epochs[0]["val/loss"]

    # The samples table grows by one row per epoch; the last one holds every epoch's sample.
    assert [row["samples.nrows"] for row in epochs] == [1, 2, 3]
    table = json.loads(logged.media(epochs[-1]["samples.path"]).read_text())
    assert table["columns"] == ["epoch", "step", "prompt", "temperature", "text"]
    assert [row[0] for row in table["data"]] == [1, 2, 3]
    assert [row[4] for row in table["data"]] == [s["text"] for s in samples]
    assert [row[1] for row in table["data"]] == [r["step"] for r in metrics]

    [image] = [row for row in logged.history if "loss_curve.path" in row]
    assert logged.media(image["loss_curve.path"]).read_bytes() == (run_dir / "loss.png").read_bytes()
    assert logged.summary["best_val_loss"] == summary["best_val_loss"]
    assert logged.summary["best_epoch"] == summary["best_epoch"] == 3
    assert (run_dir / "metrics.jsonl").is_file()  # the run's own record, whatever the logger
    assert loss_keys(logged.history) == ("train/loss", "val/loss")  # what `tinylm project check` looks for
    assert logged.offline and logged.url is None  # an offline run has no page until `wandb sync`


def test_loss_keys_find_the_losses_whatever_their_names():
    assert loss_keys([{"train/loss": 1.0}, {"eval/loss": 2.0, "epoch": 1}]) == ("train/loss", "eval/loss")
    assert loss_keys([{"train_loss": 1.0, "val_loss": 2.0}]) == ("train_loss", "val_loss")
    assert loss_keys([{"loss": 1.0, "lr": 0.1}]) == (None, None)


def test_wandb_resumed_run_table_keeps_earlier_samples(small_corpus, tmp_path, wandb_dir):
    tinylm.train(tiny_config(small_corpus, epochs=1, logger="wandb"), out=tmp_path / "run", **QUIET)
    tinylm.resume(tmp_path / "run", epochs=2, **QUIET)
    runs = wandb_runs(wandb_dir)
    assert len(runs) == 2  # a resumed training is a new W&B run
    first, second = sorted(runs, key=lambda r: max(row.get("epoch", 0) for row in r.history))
    assert [row["epoch"] for row in first.history if "val/loss" in row] == [1]
    resumed = [row for row in second.history if "val/loss" in row]
    assert [row["epoch"] for row in resumed] == [2]
    table = json.loads(second.media(resumed[-1]["samples.path"]).read_text())
    samples = read_jsonl(tmp_path / "run" / "samples.jsonl")
    assert [row[4] for row in table["data"]] == [s["text"] for s in samples]
    assert [row[0] for row in table["data"]] == [1, 2]
    assert first.name == second.name == "run"  # the tracker's run name defaults to the run directory's


def test_wandb_failed_training_finishes_the_run_with_an_error_code(tmp_path, wandb_dir, capsys):
    logger = make_logger("wandb", tmp_path, project="p", run_name="crash")
    logger.start({"model": {"family": "rnn"}}, {"parameters": 1})
    logger.log_step(1, {"train/loss": 4.2, "train/lr": 0.01, "train/tokens_per_s": 10.0})
    logger.finish({"steps": 1, "best_val_loss": None, "finished": False}, failed=True)
    [logged] = wandb_runs(wandb_dir)
    assert logged.exit_code == 1
    assert [row["train/loss"] for row in logged.history] == [4.2]
    assert "best_val_loss" not in logged.summary and logged.summary["finished"] is False
    assert "wandb sync" in capsys.readouterr().err


def test_wandb_mode_follows_credentials(tmp_path, monkeypatch):
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    assert wandb_mode() == "offline"  # no netrc file at all
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com")
    assert wandb_mode() == "offline"  # credentials for another host do not count
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"


def test_logger_errors_are_one_line_user_errors(tmp_path, monkeypatch):
    with pytest.raises(tinylm.TinyLMError, match="choose one of none, csv, tensorboard, wandb"):
        make_logger("mlflow", tmp_path)
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if wandb were not installed
    with pytest.raises(tinylm.TinyLMError, match="pip install wandb"):
        make_logger("wandb", tmp_path)


# -- TensorBoard and CSV ------------------------------------------------------------------------------
def test_tensorboard_event_files_hold_steps_epochs_samples_and_curve(small_corpus, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tinylm.train(tiny_config(small_corpus, epochs=2, logger="tensorboard"), out=tmp_path / "run", **QUIET)
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0, "tensors": 0,
                                                                                     "scalars": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("val/loss")] == \
        [(r["step"], pytest.approx(r["val_loss"], rel=1e-6)) for r in metrics]
    assert [e.value for e in events.Scalars("epoch")] == [1, 2]
    curve = [step for r in metrics for step, _ in r["train_curve"]]
    assert [e.step for e in events.Scalars("train/loss")] == curve
    texts = [e.tensor_proto.string_val[0].decode() for e in events.Tensors("samples/text_summary")]
    samples = read_jsonl(tmp_path / "run" / "samples.jsonl")
    assert len(texts) == 2 and all(s["text"].splitlines()[-1] in t for s, t in zip(samples, texts))
    [image] = events.Images("loss_curve")
    assert image.step == metrics[-1]["step"] and image.width > 100


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_logger_files_match_metrics_and_survive_resume(small_corpus, tmp_path):
    run_dir = tmp_path / "run"
    tinylm.train(tiny_config(small_corpus, epochs=2, logger="csv"), out=run_dir, **QUIET)
    tinylm.resume(run_dir, epochs=3, **QUIET)
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    epochs = _csv(run_dir / "epochs.csv")
    assert [int(r["epoch"]) for r in epochs] == [1, 2, 3]
    assert [float(r["val_loss"]) for r in epochs] == [r["val_loss"] for r in metrics]
    steps = _csv(run_dir / "steps.csv")
    curve = {step: loss for r in metrics for step, loss in r["train_curve"]}
    assert [int(r["step"]) for r in steps] == sorted(curve)
    assert all(float(r["train/loss"]) == pytest.approx(curve[int(r["step"])], abs=1e-5) for r in steps)
