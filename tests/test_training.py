"""End-to-end training (tinylm/training): tiny models for seconds, on real text."""

from __future__ import annotations

import json
import math
import time

import pytest
from conftest import tiny_config
from safetensors.torch import load_file

import tinylm
from tinylm.errors import TinyLMError
from tinylm.training import lr_at

QUIET = {"progress": False, "echo": lambda s: None}
RUN_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors", "metrics.jsonl",
             "loss.png", "samples.jsonl", "checkpoint/state.json", "checkpoint/optimizer.safetensors"]


def weights_equal(a, b) -> bool:
    wa, wb = load_file(str(a)), load_file(str(b))
    return wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)


def losses(run_dir):
    return [(r["epoch"], r["train_loss"], r["val_loss"]) for r in tinylm.load(run_dir).metrics]


@pytest.mark.parametrize("model", ["rnn", "gru", "lstm"])
def test_training_lowers_validation_loss_and_writes_a_complete_run(small_corpus, tmp_path, model):
    run = tinylm.train(tiny_config(small_corpus, model=model, epochs=3), out=tmp_path / "run", **QUIET)
    for name in RUN_FILES:
        assert (tmp_path / "run" / name).is_file(), name
    metrics = run.metrics
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"] < math.log(run.tokenizer.vocab_size)
    assert all(m["train_loss"] > 0 and m["tokens_per_s"] > 0 for m in metrics)
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert [s["epoch"] for s in samples] == [1, 2, 3]
    # the run directory reloads in one call and gives the same model
    again = tinylm.load(tmp_path / "run")
    assert again.generate("A", max_new_tokens=20, seed=1) == run.generate("A", max_new_tokens=20, seed=1)
    assert math.isclose(again.evaluate().loss, min(m["val_loss"] for m in metrics), rel_tol=1e-4)


def test_exercise_preset_trains_a_many_to_one_model(small_corpus, tmp_path):
    config = tiny_config(small_corpus, epochs=2)
    config.data = tinylm.DataConfig(source=str(small_corpus), target="last", block_size=40)
    config.model = tinylm.model_config("lstm", embed=16, hidden=32, layers=1, head="mlp", dropout=0.2)
    assert config.data.stride == 3
    run = tinylm.train(config, out=tmp_path / "run", **QUIET)
    metrics = run.metrics
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"]
    # validation scores every third character after the first window, as training's windows do
    val_tokens = run.tokenizer.encode_tensor(small_corpus.read_text()[int(40_000 * 0.9):]).numel()
    assert run.evaluate().tokens == len(range(40, val_tokens, 3))


def test_resume_extends_a_run_exactly(small_corpus, tmp_path):
    """Stopped after epoch 1 and resumed to 3 epochs == 3 epochs straight (constant LR after warm-up)."""
    tinylm.train(tiny_config(small_corpus, epochs=3, seed=5), out=tmp_path / "straight", **QUIET)
    tinylm.train(tiny_config(small_corpus, epochs=1, seed=5), out=tmp_path / "resumed", **QUIET)
    tinylm.resume(tmp_path / "resumed", epochs=3, **QUIET)
    assert losses(tmp_path / "straight") == losses(tmp_path / "resumed")
    assert weights_equal(tmp_path / "straight" / "model.safetensors", tmp_path / "resumed" / "model.safetensors")
    assert weights_equal(tmp_path / "straight/checkpoint/model.safetensors",
                         tmp_path / "resumed/checkpoint/model.safetensors")


@pytest.mark.parametrize("stateful", [False, True])
def test_resume_from_a_mid_epoch_checkpoint_is_exact(small_corpus, tmp_path, monkeypatch, stateful):
    """A run interrupted inside an epoch (cosine schedule, dropout; or carrying the recurrent state from
    batch to batch) resumes to the uninterrupted result."""
    def config():
        c = tiny_config(small_corpus, epochs=2, lr_schedule="cosine", checkpoint_every=7, stateful=stateful,
                        batch_size=8 if stateful else 32)
        c.model.dropout = 0.2
        return c

    tinylm.train(config(), out=tmp_path / "straight", **QUIET)

    from tinylm.training import loop

    calls = {"n": 0}
    real_save = loop.save_checkpoint

    def crash_after_second(*args, **kwargs):
        real_save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # stands in for a kill right after the step-14 checkpoint

    monkeypatch.setattr(loop, "save_checkpoint", crash_after_second)
    with pytest.raises(KeyboardInterrupt):
        tinylm.train(config(), out=tmp_path / "resumed", **QUIET)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    state = json.loads((tmp_path / "resumed/checkpoint/state.json").read_text())
    assert state["step"] == 14 and state["epoch"] == 0
    assert (tmp_path / "resumed/checkpoint/carried_state.safetensors").is_file() == stateful
    tinylm.resume(tmp_path / "resumed", **QUIET)
    assert losses(tmp_path / "straight") == losses(tmp_path / "resumed")
    assert weights_equal(tmp_path / "straight/checkpoint/model.safetensors",
                         tmp_path / "resumed/checkpoint/model.safetensors")


def test_stateful_training_carries_the_state_and_learns(small_corpus, tmp_path, monkeypatch):
    from tinylm.models.rnn import RecurrentLM

    seen = []
    real_forward = RecurrentLM.forward

    def spy(self, ids, state=None):
        if self.training:
            seen.append(state is not None)
        return real_forward(self, ids, state)

    monkeypatch.setattr(RecurrentLM, "forward", spy)
    from tinylm.machine import devices
    from tinylm.machine.devices import PrecisionChoice

    # no precision probe: its forward passes (from a zero state) are not training steps
    monkeypatch.setattr(devices, "training_precision", lambda *a, **k: PrecisionChoice("fp32", "fixed"))
    run = tinylm.train(tiny_config(small_corpus, epochs=3, stateful=True, batch_size=8), out=tmp_path / "run",
                       **QUIET)
    steps = run.metrics[0]["steps_per_epoch"]
    # each epoch starts from a zero state, then every batch continues from the one before
    assert seen == ([False] + [True] * (steps - 1)) * 3
    assert run.metrics[-1]["val_loss"] < run.metrics[0]["val_loss"] < math.log(run.tokenizer.vocab_size)
    assert run.metrics[-1]["val_context"] == "stream"


def test_stateful_needs_a_recurrent_model_and_one_stream(small_corpus):
    with pytest.raises(TinyLMError, match="recurrent model"):
        tiny_config(small_corpus, model="gpt", stateful=True).__post_init__()
    config = tiny_config(small_corpus, stateful=True)
    config.data.lines = True
    with pytest.raises(TinyLMError, match="one stream"):
        config.__post_init__()


def test_a_run_killed_after_its_last_checkpoint_is_completed_by_resume(small_corpus, tmp_path):
    tinylm.train(tiny_config(small_corpus, epochs=2), out=tmp_path / "run", **QUIET)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    (tmp_path / "run" / "summary.json").unlink()  # as if killed between the last checkpoint and the summary
    tinylm.resume(tmp_path / "run", **QUIET)
    again = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == metrics  # nothing trained or evaluated twice
    assert {k: again[k] for k in ("best_val_loss", "epochs", "steps", "stop_reason", "finished")} == {
        k: summary[k] for k in ("best_val_loss", "epochs", "steps", "stop_reason", "finished")}
    with pytest.raises(TinyLMError, match="already"):  # and now it is complete
        tinylm.resume(tmp_path / "run", **QUIET)
    tinylm.train(tiny_config(small_corpus, model="markov"), out=tmp_path / "markov", **QUIET)
    with pytest.raises(TinyLMError, match="one pass"):  # a counting model has nothing to resume
        tinylm.resume(tmp_path / "markov", **QUIET)


def test_early_stopping_keeps_the_best_checkpoint(small_corpus, tmp_path):
    # a learning rate far too high makes validation loss stop improving quickly
    config = tiny_config(small_corpus, epochs=30, patience=2, lr=0.3, warmup_steps=0, grad_clip=0.0)
    run = tinylm.train(config, out=tmp_path / "run", **QUIET)
    metrics = run.metrics
    best = min(metrics, key=lambda m: m["val_loss"])
    assert len(metrics) < 30
    assert len(metrics) == best["epoch"] + 2  # stopped `patience` epochs after the best
    assert math.isclose(run.evaluate().loss, best["val_loss"], rel_tol=1e-4)
    with pytest.raises(TinyLMError, match="stopped early"):
        tinylm.resume(tmp_path / "run", epochs=40, **QUIET)


def test_step_budget_stops_training(small_corpus, tmp_path):
    run = tinylm.train(tiny_config(small_corpus, epochs=50, max_steps=12), out=tmp_path / "run", **QUIET)
    assert run.metrics[-1]["step"] == 12 and len(run.metrics) == 1


def test_time_budget_stops_training_then_evaluates(small_corpus, tmp_path):
    run = tinylm.train(tiny_config(small_corpus, epochs=10_000, time_budget=1.5), out=tmp_path / "run", **QUIET)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stop_reason"] == "time_budget"
    assert 1.5 <= summary["wall_seconds"] < 10 and 0 < summary["train_seconds"] <= summary["wall_seconds"]
    assert run.metrics[-1]["val_loss"] < math.log(run.tokenizer.vocab_size)


def test_time_budget_counts_the_evaluations_too(small_corpus, tmp_path, monkeypatch):
    from tinylm.training import loop

    real_score = loop.score

    def slow_score(*args, **kwargs):  # an evaluation that takes 0.5 s of the budget
        time.sleep(0.5)
        return real_score(*args, **kwargs)

    monkeypatch.setattr(loop, "score", slow_score)
    tinylm.train(tiny_config(small_corpus, epochs=10_000, time_budget=2.0), out=tmp_path / "run", **QUIET)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stop_reason"] == "time_budget"
    assert 2.0 <= summary["wall_seconds"] < 4.0
    assert summary["train_seconds"] < summary["wall_seconds"] - 0.5 * (summary["epochs"] - 1)


def test_existing_run_is_not_overwritten_without_permission(small_corpus, tmp_path):
    tinylm.train(tiny_config(small_corpus, epochs=1), out=tmp_path / "run", **QUIET)
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(TinyLMError, match="--overwrite"):
        tinylm.train(tiny_config(small_corpus, epochs=1, seed=2), out=tmp_path / "run", **QUIET)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before
    tinylm.train(tiny_config(small_corpus, epochs=1, seed=2), out=tmp_path / "run", overwrite=True, **QUIET)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() != before
    with pytest.raises(TinyLMError, match="already has 1 epochs"):
        tinylm.resume(tmp_path / "run", epochs=1, **QUIET)


def test_diverging_loss_stops_with_a_message_and_keeps_the_last_checkpoint(small_corpus, tmp_path, monkeypatch):
    tinylm.train(tiny_config(small_corpus, epochs=1), out=tmp_path / "run", **QUIET)
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    from tinylm.models.rnn import RecurrentLM

    real_forward = RecurrentLM.forward

    def poisoned(self, ids, state=None):
        logits, state = real_forward(self, ids, state)
        return logits * float("nan") if self.training else logits, state

    monkeypatch.setattr(RecurrentLM, "forward", poisoned)
    with pytest.raises(TinyLMError, match="became nan"):
        tinylm.resume(tmp_path / "run", epochs=2, **QUIET)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before
    assert json.loads((tmp_path / "run/checkpoint/state.json").read_text())["epoch"] == 1


def test_learning_rate_schedule():
    cfg = tinylm.TrainConfig(lr=1.0, warmup_steps=10, lr_schedule="cosine", min_lr_ratio=0.1)
    assert lr_at(0, cfg, 110) == pytest.approx(0.1)
    assert lr_at(9, cfg, 110) == pytest.approx(1.0)
    assert lr_at(60, cfg, 110) == pytest.approx(0.55)
    assert lr_at(110, cfg, 110) == pytest.approx(0.1)
    cfg.time_budget = 100.0  # half the seconds spent weighs more than 10% of the steps
    assert lr_at(20, cfg, 110, elapsed=50.0) == pytest.approx(0.55)
    assert lr_at(20, cfg, 110, elapsed=500.0) == pytest.approx(0.1)
    cfg.lr_schedule = "linear"
    assert lr_at(60, cfg, 110) == pytest.approx(0.55)
    assert lr_at(20, cfg, 110, elapsed=75.0) == pytest.approx(0.1 + 0.9 * 0.25)
    cfg.min_lr_ratio = 0.0  # down to zero at the end of the budget
    assert lr_at(30, cfg, 110, elapsed=100.0) == 0.0
    cfg.lr_schedule = "constant"
    assert lr_at(500, cfg, 110) == 1.0


def test_validation_split_too_small(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("abcdefghij" * 30, encoding="utf-8")
    config = tiny_config(path, epochs=1)
    config.data.val_fraction = 0.0
    with pytest.raises(TinyLMError, match="validation split"):
        tinylm.train(config, out=tmp_path / "run", **QUIET)
    assert not (tmp_path / "run").exists()


def _titles(n: int, seed: int = 0) -> str:
    import random

    rng = random.Random(seed)
    subjects = ["Markets", "Council", "Scientists", "Team", "Minister", "Storm", "Court", "Startup"]
    verbs = ["rise", "falls", "approve", "delay", "win", "warn", "reject", "launch"]
    objects = ["new plan", "budget", "final", "probe", "record", "deal", "vote", "report"]
    return "".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}\n" for _ in range(n))


def test_line_mode_trains_on_whole_lines_and_generation_stops_at_eos(tmp_path):
    corpus = tmp_path / "titles.txt"
    corpus.write_text(_titles(1500), encoding="utf-8")
    config = tiny_config(corpus, epochs=4)
    config.data = tinylm.DataConfig(source=str(corpus), lines=True, block_size=48)
    run = tinylm.train(config, out=tmp_path / "run", **QUIET)
    metrics = run.metrics
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"]
    lengths = []
    for seed in range(5):
        text = run.generate("", max_new_tokens=200, seed=seed, temperature=0.5)
        assert "\n" not in text
        lengths.append(len(text))
    assert max(lengths) < 60  # stopped at <eos>, well before the 200-token limit
    started = run.generate("Markets", max_new_tokens=80, seed=0, temperature=0.5)
    assert started.startswith("Markets ") and len(started) < 60
    # the validation split is whole lines; every character of it (newlines as <eos>) is scored
    from tinylm.data import split_lines

    val_text = split_lines(corpus.read_text(), 0.1)[1]
    assert run.evaluate().chars == len(val_text)


def test_summary_names_the_machine_and_precision_of_the_run(small_corpus, tmp_path):
    tinylm.train(tiny_config(small_corpus, epochs=1), out=tmp_path / "run", **QUIET)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    for key in ("device", "precision", "precision_reason", "threads", "processes", "cpu", "cpu_capability",
                "native_bf16"):
        assert key in summary, key
    assert summary["precision"] in ("bf16", "fp32") and summary["processes"] == 1 and summary["threads"] >= 1


def test_a_bf16_kernel_failing_on_the_first_step_falls_back_to_fp32(small_corpus, tmp_path, monkeypatch):
    """The probe passed but the real step's kernel fails (as oneDNN's LSTM did on AVX2 CPUs): the step is redone
    in fp32, said once, and the run completes and learns."""
    import torch

    from tinylm.machine import devices
    from tinylm.machine.devices import PrecisionChoice
    from tinylm.models.rnn import RecurrentLM

    monkeypatch.setattr(devices, "training_precision", lambda *a, **k: PrecisionChoice("bf16", "simulated"))
    forward = RecurrentLM.forward

    def failing_under_autocast(self, ids, state=None):
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("could not create a primitive descriptor for the LSTM forward propagation primitive")
        return forward(self, ids, state)

    monkeypatch.setattr(RecurrentLM, "forward", failing_under_autocast)
    lines = []
    run = tinylm.train(tiny_config(small_corpus, epochs=2), out=tmp_path / "run", progress=False, echo=lines.append)
    assert any(line.startswith("note: bf16 autocast failed on the first step") for line in lines)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["precision"] == "fp32" and "primitive descriptor" in summary["precision_reason"]
    assert run.metrics[-1]["val_loss"] < run.metrics[0]["val_loss"]


def test_resume_takes_this_machines_settings_and_says_which_changed(small_corpus, tmp_path):
    tinylm.train(tiny_config(small_corpus, epochs=1), out=tmp_path / "run", **QUIET)
    lines = []
    tinylm.resume(tmp_path / "run", epochs=2, precision="fp32", threads=1, progress=False, echo=lines.append)
    assert any("--precision fp32 (was auto)" in line and "--threads 1 (was None)" in line for line in lines)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["precision"] == "fp32" and summary["threads"] == 1 and summary["epochs"] == 2
    assert tinylm.RunConfig.load(tmp_path / "run" / "config.json").train.precision == "fp32"
    with pytest.raises(TinyLMError, match="--precision must be"):
        tinylm.resume(tmp_path / "run", epochs=3, precision="fp16", **QUIET)


def test_the_run_keeps_its_data_source_absolute_and_leaves_the_callers_config_alone(small_corpus, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.chdir(small_corpus.parent)
    config = tiny_config(small_corpus.name, epochs=1)
    tinylm.train(config, out=tmp_path / "run", **QUIET)
    assert config.data.source == small_corpus.name and config.model.vocab_size == 0  # not changed
    saved = tinylm.RunConfig.load(tmp_path / "run" / "config.json")
    assert saved.data.source == str(small_corpus.resolve())
    monkeypatch.chdir(tmp_path)  # elsewhere: the run still finds its validation text
    assert tinylm.load(tmp_path / "run").evaluate().tokens > 0


def test_train_never_changes_the_callers_config(small_corpus, tmp_path, monkeypatch):
    """The run's config (vocabulary size, sample prompt, absolute data path) is derived from the caller's, which
    stays as it was: the same object trains a second run the same way."""
    import copy

    monkeypatch.chdir(tmp_path)
    config = tiny_config(small_corpus.name, epochs=1)  # a relative path: the run keeps it absolute
    before = copy.deepcopy(config)
    run = tinylm.train(config, out=tmp_path / "run", **QUIET)
    assert config == before and config.train.sample_prompt is None
    assert run.config.model.vocab_size == run.tokenizer.vocab_size
    assert run.config.data.source == str(small_corpus.resolve()) and run.config.train.sample_prompt
