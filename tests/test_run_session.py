"""tinylm.run.session: the RunSession every engine reports to. First its parts (the rule of improvement, the
epoch's record, sample and plot, the summary, opening the folder); then the same run-directory assertions over
the three engines that report to it: tinylm's own loop, the transformers Trainer (fine-tuning) and Lightning."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import tinylm
from tinylm.config import RunConfig, TrainConfig
from tinylm.errors import TinyLMError
from tinylm.folders import hold
from tinylm.io import read_jsonl
from tinylm.run.layout import LOSS_PLOT, METRICS, SAMPLES, SUMMARY, WEIGHTS, is_run
from tinylm.run.session import Progress, RunSession, epoch_line, epoch_record, startup_lines

pytestmark = pytest.mark.usefixtures("one_thread")


class RecordingLogger:
    def __init__(self):
        self.calls = []

    def check(self):
        self.calls.append(("check",))

    def start(self, config, info):
        self.calls.append(("start", config, info))

    def log_step(self, step, metrics):
        self.calls.append(("step", step, metrics))

    def log_epoch(self, epoch, step, metrics, sample):
        self.calls.append(("epoch", epoch, step, metrics, sample))

    def finish(self, summary, failed=False):
        self.calls.append(("finish", summary, failed))


class EchoModel:
    """Stands in for a LoadedModel: its sample is the prompt and the settings it was asked for."""

    def generate(self, prompt, max_new_tokens, temperature, seed):
        return f"{prompt}|{max_new_tokens}|{temperature}|{seed}\nline two"


@dataclass
class Result:
    loss: float
    perplexity: float
    bits_per_char: float
    context: str = "windows"


def measured(epoch: int, loss: float) -> dict:
    return dict(epoch=epoch, step=10 * epoch, train_loss=loss + 0.1, result=Result(loss, 2.0 ** loss, loss / 2),
                lr=1e-3, tokens=1000, epoch_seconds=2.0, eval_seconds=0.5, elapsed_seconds=2.0 * epoch,
                steps_per_epoch=10, curve=[[5, loss + 0.2]])


def session_in(folder: Path, lines: list | None = None, main: bool = True, **train) -> RunSession:
    config = RunConfig(train=TrainConfig(**{"sample_prompt": "ROMEO:", "sample_tokens": 7, "sample_temperature": 0.5,
                                            "seed": 3, "epochs": 2, **train}))
    session = RunSession(folder, config, echo=(lines if lines is not None else []).append, main=main)
    session.logger = RecordingLogger()
    session.title = "lstm on text"
    return session


# -- the parts ---------------------------------------------------------------------------------------------
def test_an_epoch_improves_only_below_every_earlier_one_and_patience_counts_the_others():
    progress = Progress()
    assert [progress.judge(epoch, loss) for epoch, loss in enumerate([3.0, 2.5, 2.5, 2.7, 2.4], 1)] == \
        [True, True, False, False, True]  # equal is not better
    assert (progress.best_val_loss, progress.best_epoch, progress.bad_epochs) == (2.4, 5, 0)
    progress.judge(6, 2.6)
    progress.judge(7, 2.6)
    assert progress.out_of_patience(2) and not progress.out_of_patience(3) and not progress.out_of_patience(0)


def test_each_epoch_writes_its_record_sample_best_weights_and_plot(tmp_path):
    lines, saved = [], []
    session = session_in(tmp_path, lines)
    session.log_step(4, 2.5, 1e-3, 900.0)
    for epoch, loss in ((1, 2.0), (2, 2.2)):
        session.end_epoch(model=EchoModel(), keep_best=lambda path: (saved.append(path), path.write_bytes(b"w")),
                          **measured(epoch, loss))
    assert saved == [tmp_path / WEIGHTS]  # only the improving epoch's weights are kept
    records = read_jsonl(tmp_path / METRICS)
    assert [(r["epoch"], r["best"]) for r in records] == [(1, True), (2, False)]
    samples = read_jsonl(tmp_path / SAMPLES)
    assert samples[0] == {"epoch": 1, "prompt": "ROMEO:", "temperature": 0.5, "text": "ROMEO:|7|0.5|3\nline two"}
    assert (tmp_path / LOSS_PLOT).is_file()  # drawn after the first epoch (the next within 20 s waits)
    assert lines[0] == epoch_line("1/2", records[0]) and lines[0].endswith("*best*")
    assert lines[1] == "  sample: ROMEO:|7|0.5|3\n          line two"  # continuation lines indented
    calls = session.logger.calls
    assert [c[0] for c in calls] == ["step", "epoch", "epoch"]
    assert calls[0][2] == {"train/loss": 2.5, "train/lr": 1e-3, "train/tokens_per_s": 900.0}
    assert calls[1][4] == samples[0]  # the samples table gets the same record
    session.facts = {"parameters": 5}
    summary = session.finish(epochs=2, finished=True)
    assert json.loads((tmp_path / SUMMARY).read_text()) == summary == {
        "parameters": 5, "best_val_loss": 2.0, "best_epoch": 1, "epochs": 2, "finished": True}
    assert calls[-1] == ("finish", summary, False)


def test_a_failed_run_closes_the_logger_but_writes_no_summary(tmp_path):
    session = session_in(tmp_path)
    session.finish(failed=True, steps=3)
    assert not (tmp_path / SUMMARY).exists()
    assert session.logger.calls == [("finish", {"best_val_loss": None, "best_epoch": None, "steps": 3}, True)]


def test_a_process_other_than_the_first_judges_but_writes_and_says_nothing(tmp_path):
    lines = []
    session = session_in(tmp_path, lines, main=False)
    record = session.end_epoch(model=EchoModel(), keep_best=lambda path: pytest.fail("a second process saved"),
                               **measured(1, 2.0))
    assert record["best"] and session.progress.best_epoch == 1  # every process stops at the same epoch
    session.finish(x=1)
    assert list(Path(tmp_path).iterdir()) == [] and lines == []


def test_records_past_the_checkpoint_are_redone(tmp_path):
    session = session_in(tmp_path, sample_prompt="")
    for epoch in (1, 2, 3):
        session.end_epoch(model=EchoModel(), keep_best=lambda path: None, **measured(epoch, 3.0 - epoch / 10))
    session.check_records(resumed_after=1)
    assert [r["epoch"] for r in read_jsonl(tmp_path / METRICS)] == [1]
    assert [r["epoch"] for r in read_jsonl(tmp_path / SAMPLES)] == [1]
    assert session.logger.calls[-1] == ("check",)


def test_a_counting_models_epoch_shows_no_training_loss():
    line = epoch_line("1", epoch_record(epoch=1, step=1, train_loss=None, result=Result(1.5, 4.48, 2.1), lr=0.0,
                                        tokens=10, epoch_seconds=1.0, eval_seconds=0.1, elapsed_seconds=1.0,
                                        best=True, steps_per_epoch=1, curve=[]))
    assert line.startswith("epoch 1: train -  val 1.5000")


def test_startup_lines_align_their_labels():
    assert startup_lines("tinylm train -> runs/a", [("data", "x"), ("tokens/param", "0.50 per epoch")]) == [
        "tinylm train -> runs/a", "  data        x", "  tokens/param 0.50 per epoch"]


def test_opening_a_new_run_stages_it_holds_it_and_removes_it_when_nothing_was_trained(tmp_path):
    out = tmp_path / "run"
    session = session_in(out)
    with pytest.raises(RuntimeError, match="boom"):
        with session.open_new(False, lambda folder: (folder / "config.json").write_text("{}")):
            assert (out / "config.json").is_file() and not list(tmp_path.glob(".run.*.tmp"))
            with pytest.raises(TinyLMError, match="is being written by"):
                with hold(out):
                    pass
            raise RuntimeError("boom")
    assert not out.exists()  # failed before any epoch: no half-made run blocks a rerun
    with hold(out):  # and the folder was let go
        pass


def test_a_run_that_wrote_an_epoch_stays_after_a_failure(tmp_path):
    out = tmp_path / "run"
    session = session_in(out)
    with pytest.raises(RuntimeError):
        with session.open_new(False, lambda folder: None):
            session.end_epoch(model=EchoModel(), keep_best=lambda path: path.write_bytes(b"w"), **measured(1, 2.0))
            raise RuntimeError("after the epoch")
    assert (out / METRICS).is_file() and (out / WEIGHTS).is_file()


def test_a_refused_folder_is_never_touched_not_even_after_the_failure(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    session = session_in(out)
    with pytest.raises(TinyLMError, match="is not a tinylm run"):
        session.open_new(True, lambda folder: pytest.fail("wrote into a refused folder"))
    session.close(failed=True)  # what an engine's error handler does: the folder was never the session's
    assert (out / "notes.txt").read_text() == "mine"
    with hold(out):
        pass


def test_entries_to_keep_move_into_the_new_run(tmp_path):
    out = tmp_path / "run"
    (out / "lightning").mkdir(parents=True)
    (out / "lightning" / "best.ckpt").write_bytes(b"ckpt")
    with session_in(out).open_new(False, lambda folder: (folder / "config.json").write_text("{}"),
                                  keep=("lightning",)):
        pass
    assert (out / "lightning" / "best.ckpt").read_bytes() == b"ckpt" and (out / "config.json").is_file()


def test_a_second_holder_is_refused_or_waits_its_turn(tmp_path):
    """hold(): a second writer of a folder is refused; with wait=True (a cache folder both would write the
    same) it waits until the first lets go."""
    import threading
    import time

    folder, entered, order = tmp_path / "cached", threading.Event(), []

    def first():
        with hold(folder):
            entered.set()
            time.sleep(0.4)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    entered.wait(5)
    with pytest.raises(TinyLMError, match="is being written by"):
        with hold(folder):
            pass
    with hold(folder, wait=True):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]


# -- the same run directory from every engine ---------------------------------------------------------------
ENGINES = ["tinylm", "transformers", "lightning"]
RECORD_KEYS = {"epoch", "step", "train_loss", "val_loss", "val_perplexity", "val_bits_per_char", "lr",
               "tokens_per_s", "epoch_seconds", "eval_seconds", "elapsed_seconds", "best", "steps_per_epoch",
               "train_curve", "val_context"}
SUMMARY_KEYS = {"parameters", "train_tokens", "val_tokens", "device", "threads", "processes", "cpu", "precision",
                "precision_reason", "hardware", "best_val_loss", "best_epoch", "epochs", "steps", "train_seconds",
                "stop_reason", "finished"}


@pytest.fixture(scope="module")
def engine_corpus(tmp_path_factory, shakespeare_text) -> Path:
    path = tmp_path_factory.mktemp("engines") / "corpus.txt"
    path.write_text(shakespeare_text[:20_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def gpt2_base(tmp_path_factory, engine_corpus) -> Path:
    pytest.importorskip("transformers")
    from test_finetune import make_tiny_gpt2

    return make_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"), engine_corpus.read_text(encoding="utf-8"))


def train_with(engine: str, corpus: Path, out: Path, base: Path | None, *, overwrite: bool = False,
               logger: str = "csv", echo=lambda line: None) -> None:
    """Two epochs of a tiny model into `out`, by `engine`, through its documented API."""
    if engine == "tinylm":
        from conftest import tiny_config

        tinylm.train(tiny_config(corpus, epochs=2, logger=logger, sample_tokens=20), out=out, overwrite=overwrite,
                     progress=False, echo=echo)
    elif engine == "transformers":
        from tinylm.training.finetune import FinetuneConfig

        tinylm.finetune(base, corpus, out=out, overwrite=overwrite, progress=False, echo=echo, config=FinetuneConfig(
            epochs=2, lr=3e-3, batch_size=16, block_size=32, sample_tokens=20, logger=logger))
    else:
        pl = pytest.importorskip("lightning.pytorch")
        from tinylm.training.lightning import LitLanguageModel, TextDataModule, callbacks, save_run

        pl.seed_everything(0, verbose=False)
        data = TextDataModule(tinylm.DataConfig(source=str(corpus), block_size=32), batch_size=32)
        module = LitLanguageModel(tinylm.model_config("lstm", vocab_size=data.vocab_size, embed=16, hidden=48,
                                                      layers=1), lr=1e-2)
        recorder, *others = callbacks(out, patience=3, overwrite=overwrite, logger=logger, echo=echo)
        trainer = pl.Trainer(max_epochs=2, callbacks=[recorder, *others], logger=False, num_sanity_val_steps=0,
                             enable_progress_bar=False, enable_model_summary=False, limit_train_batches=20)
        trainer.fit(module, datamodule=data)
        save_run(module, data, out, recorder, trainer=trainer)


@pytest.fixture(scope="module", params=ENGINES)
def engine_run(request, engine_corpus, tmp_path_factory):
    """(engine, run directory, the lines it said) for each engine."""
    base = request.getfixturevalue("gpt2_base") if request.param == "transformers" else None
    out, lines = tmp_path_factory.mktemp(request.param) / "run", []
    train_with(request.param, engine_corpus, out, base, echo=lines.append)
    return request.param, out, lines


def test_every_engine_writes_a_whole_run_that_loads_samples_and_evaluates(engine_run):
    engine, out, _ = engine_run
    assert is_run(out)
    for name in ("tokenizer.json", WEIGHTS, METRICS, SAMPLES, LOSS_PLOT, SUMMARY, "epochs.csv", "steps.csv"):
        assert (out / name).is_file(), f"{engine}: {name}"
    assert not list(out.parent.glob(f".{out.name}.*.tmp")) and not list(out.parent.glob(f".{out.name}.*.old"))
    with hold(out):  # the engine let the folder go
        pass
    run = tinylm.load(out)
    assert isinstance(run.generate("ROMEO:", max_new_tokens=10, seed=0), str)
    assert math.isfinite(run.evaluate().loss)


def test_every_engine_records_each_epoch_alike(engine_run):
    engine, out, _ = engine_run
    records = read_jsonl(out / METRICS)
    assert [r["epoch"] for r in records] == [1, 2], engine
    assert all(RECORD_KEYS <= r.keys() for r in records), RECORD_KEYS - records[0].keys()
    losses = [r["val_loss"] for r in records]
    assert [r["best"] for r in records] == [True, losses[1] < losses[0]]  # the one rule of improvement
    assert all(r["val_perplexity"] == pytest.approx(math.exp(r["val_loss"]), rel=1e-4) for r in records)
    samples = read_jsonl(out / SAMPLES)
    assert [set(s) for s in samples] == [{"epoch", "prompt", "temperature", "text"}] * 2
    assert [s["epoch"] for s in samples] == [1, 2]
    logged = (out / "epochs.csv").read_text().splitlines()
    assert len(logged) == 3 and logged[0].startswith("epoch,step,train_loss,val_loss")  # the logger got each epoch


def test_every_engine_sums_up_the_run_alike(engine_run):
    engine, out, _ = engine_run
    summary = json.loads((out / SUMMARY).read_text())
    assert SUMMARY_KEYS <= summary.keys(), SUMMARY_KEYS - summary.keys()
    records = read_jsonl(out / METRICS)
    best = min(records, key=lambda r: r["val_loss"])
    assert summary["best_val_loss"] == pytest.approx(best["val_loss"], abs=1e-5)
    assert (summary["best_epoch"], summary["epochs"], summary["finished"]) == (best["epoch"], 2, True)
    assert summary["stop_reason"] == "epochs" and summary["steps"] == records[-1]["step"]


def test_every_engine_says_what_it_is_about_to_do_then_each_epoch(engine_run):
    engine, out, lines = engine_run
    assert f"-> {out}" in lines[0], lines[0]
    labels = [line.split()[0] for line in lines[1:] if line.startswith("  ") and not line.startswith("   ")]
    assert labels[:1] == ["data"] and "model" in labels and labels.index("training") < labels.index("device")
    device_line = next(line for line in lines if line.startswith("  device"))
    assert "fp32" in device_line or "bf16" in device_line
    assert any(line.startswith("epoch 2/2: train ") for line in lines)
    assert sum(line.startswith("  sample: ") for line in lines) == 2


def test_every_engine_leaves_a_folder_it_may_not_write_untouched(engine_run, engine_corpus, tmp_path, request):
    engine = engine_run[0]
    base = request.getfixturevalue("gpt2_base") if engine == "transformers" else None
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(TinyLMError, match="is not a tinylm run"):
        train_with(engine, engine_corpus, out, base, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"


def test_every_engine_replaces_an_old_run_whole_and_removes_a_run_it_failed_to_train(
        engine_run, engine_corpus, tmp_path, request, monkeypatch):
    engine = engine_run[0]
    base = request.getfixturevalue("gpt2_base") if engine == "transformers" else None
    out = tmp_path / "run"
    shutil.copytree(engine_run[1], out)
    with pytest.raises(TinyLMError, match="--overwrite"):
        train_with(engine, engine_corpus, out, base, logger="none")
    train_with(engine, engine_corpus, out, base, overwrite=True, logger="none")
    assert not (out / "epochs.csv").exists()  # nothing of the old run (its CSV logger's files) stays behind
    assert len(read_jsonl(out / METRICS)) == 2

    def boom(self, **measured):
        raise RuntimeError("the first evaluation failed")

    monkeypatch.setattr(RunSession, "end_epoch", boom)
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="the first evaluation failed"):
        train_with(engine, engine_corpus, fresh, base)
    assert not fresh.exists()  # nothing trained: no half-made run blocks the rerun
    with hold(fresh):
        pass
