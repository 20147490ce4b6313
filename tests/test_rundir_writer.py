"""tinylm.run.session: what a run directory holds after each epoch and at the end, whoever trains (the loop and
loop and the fine-tuning Trainer both write through it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tinylm.config import TrainConfig
from tinylm.io import read_jsonl
from tinylm.run.layout import LOSS_PLOT, METRICS, SAMPLES, SUMMARY, WEIGHTS
from tinylm.run.session import RunWriter, epoch_line, epoch_record


class RecordingLogger:
    def __init__(self):
        self.calls = []

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


def record(epoch: int, loss: float, best: bool) -> dict:
    return epoch_record(epoch=epoch, step=10 * epoch, train_loss=loss + 0.1, result=Result(loss, 2.0 ** loss, loss / 2),
                        lr=1e-3, tokens=1000, epoch_seconds=2.0, eval_seconds=0.5, elapsed_seconds=2.0 * epoch,
                        best=best, steps_per_epoch=10, curve=[[5, loss + 0.2]])


def test_each_epoch_writes_its_record_sample_best_weights_and_plot(tmp_path):
    logger, lines, saved = RecordingLogger(), [], []
    writer = RunWriter(tmp_path, logger, title="lstm on text", echo=lines.append)
    tc = TrainConfig(sample_prompt="ROMEO:", sample_tokens=7, sample_temperature=0.5, seed=3)
    writer.start({"a": 1}, {"parameters": 5})
    writer.log_step(4, 2.5, 1e-3, 900.0)
    for epoch, loss, best in ((1, 2.0, True), (2, 2.2, False)):
        writer.end_epoch(record(epoch, loss, best), f"{epoch}/2", EchoModel(), tc,
                         keep_best=lambda path: (saved.append(path), path.write_bytes(b"w")))
    assert saved == [tmp_path / WEIGHTS]  # only the improving epoch's weights are kept
    assert [r["epoch"] for r in read_jsonl(tmp_path / METRICS)] == [1, 2]
    samples = read_jsonl(tmp_path / SAMPLES)
    assert samples[0] == {"epoch": 1, "prompt": "ROMEO:", "temperature": 0.5, "text": "ROMEO:|7|0.5|3\nline two"}
    assert (tmp_path / LOSS_PLOT).is_file()  # drawn after the first epoch (the next within 20 s waits)
    assert lines[0] == epoch_line("1/2", read_jsonl(tmp_path / METRICS)[0]) and lines[0].endswith("*best*")
    assert lines[1] == "  sample: ROMEO:|7|0.5|3\n          line two"  # continuation lines indented
    kinds = [c[0] for c in logger.calls]
    assert kinds == ["start", "step", "epoch", "epoch"]
    assert logger.calls[1][2] == {"train/loss": 2.5, "train/lr": 1e-3, "train/tokens_per_s": 900.0}
    assert logger.calls[2][4] == samples[0]  # the samples table gets the same record
    writer.finish({"best_val_loss": 2.0})
    assert json.loads((tmp_path / SUMMARY).read_text()) == {"best_val_loss": 2.0}
    assert logger.calls[-1] == ("finish", {"best_val_loss": 2.0}, False)


def test_a_failed_run_closes_the_logger_but_writes_no_summary(tmp_path):
    logger = RecordingLogger()
    RunWriter(tmp_path, logger, title="t").finish({"steps": 3}, failed=True)
    assert not (tmp_path / SUMMARY).exists() and logger.calls == [("finish", {"steps": 3}, True)]


def test_a_process_other_than_the_first_writes_and_says_nothing(tmp_path):
    lines = []
    writer = RunWriter(tmp_path, RecordingLogger(), title="t", echo=lines.append, main=False)
    assert writer.end_epoch(record(1, 2.0, True), "1", EchoModel(), TrainConfig(),
                            keep_best=lambda path: pytest.fail("a second process saved weights")) is None
    writer.finish({"x": 1})
    assert list(Path(tmp_path).iterdir()) == [] and lines == []


def test_records_past_the_checkpoint_are_redone(tmp_path):
    writer = RunWriter(tmp_path, RecordingLogger(), title="t", echo=lambda line: None)
    tc = TrainConfig(sample_prompt="")
    for epoch in (1, 2, 3):
        writer.end_epoch(record(epoch, 3.0 - epoch / 10, True), str(epoch), EchoModel(), tc, keep_best=lambda p: None)
    writer.redo_after(1)
    assert [r["epoch"] for r in read_jsonl(tmp_path / METRICS)] == [1]
    assert [r["epoch"] for r in read_jsonl(tmp_path / SAMPLES)] == [1]


def test_a_counting_models_epoch_shows_no_training_loss():
    line = epoch_line("1", epoch_record(epoch=1, step=1, train_loss=None, result=Result(1.5, 4.48, 2.1), lr=0.0,
                                        tokens=10, epoch_seconds=1.0, eval_seconds=0.1, elapsed_seconds=1.0,
                                        best=True, steps_per_epoch=1, curve=[]))
    assert line.startswith("epoch 1: train -  val 1.5000")


def test_a_second_holder_is_refused_or_waits_its_turn(tmp_path):
    """hold(): a second writer of a folder is refused; with wait=True (a cache folder both would write the
    same) it waits until the first lets go."""
    import threading
    import time

    from tinylm.errors import TinyLMError
    from tinylm.folders import hold

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
