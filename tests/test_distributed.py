"""Multi-process training with torchrun (DDP, gloo on CPU): ranks stay in sync, only rank 0 writes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import tinylm


def test_two_processes_train_in_sync_and_rank_zero_writes(tmp_path, shakespeare_text):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(shakespeare_text[:30_000], encoding="utf-8")
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "tinylm", "train",
               "--model", "lstm", "--data", corpus, "--out", out, "--epochs", "3", "--hidden", "32", "--embed", "16",
               "--layers", "1",
               "--block-size", "32", "--batch-size", "16", "--lr", "0.01", "--quiet", "--sample-tokens", "20"]
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("tinylm train ->") == 1  # only rank 0 prints
    assert "2 processes (DDP)" in result.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all(r["world_size"] == 2 and r["ranks_in_sync"] for r in records)
    assert records[-1]["val_loss"] < records[0]["val_loss"]
    # each rank takes its own half of the windows: an epoch has half the steps of one process
    windows = (27_000 - 32) // 32 + 1
    assert records[0]["steps_per_epoch"] == -(-(windows // 2) // 16)
    run = tinylm.load(out)
    assert run.evaluate().loss == pytest.approx(records[-1]["val_loss"], rel=1e-4)


def test_processes_flag_relaunches_through_torchrun_and_resume_keeps_it(tmp_path, shakespeare_text, capfd):
    from tinylm.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(shakespeare_text[:20_000], encoding="utf-8")
    out = tmp_path / "run"
    flags = ["--model", "lstm", "--data", str(corpus), "--out", str(out), "--hidden", "32", "--embed", "16",
             "--layers", "1",
             "--block-size", "32", "--batch-size", "16", "--lr", "0.01", "--quiet", "--sample-tokens", "0"]
    assert main(["train", *flags, "--epochs", "1", "--processes", "2", "--stateful"]) == 0
    assert "2 processes (DDP)" in capfd.readouterr().out
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 0  # config.json says 2 processes
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["world_size"] for r in records] == [2, 2] and all(r["ranks_in_sync"] for r in records)
    assert tinylm.load(out).config.train.processes == 2
