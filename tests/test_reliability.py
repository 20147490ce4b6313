"""Reliability: bad input gets a one-line error and exit code 2, crashes lose nothing, and no file a
run directory holds can execute code when loaded."""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_config
from safetensors.torch import load_file

import tinylm
from tinylm.cli import main as cli_main

QUIET = {"progress": False, "echo": lambda s: None}


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = cli_main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("reliability")
    (folder / "corpus.txt").write_text((data_dir / "tinyshakespeare/input.txt").read_text()[:20_000])
    tinylm.train(tiny_config(folder / "corpus.txt", epochs=1), out=folder / "run", **QUIET)
    return folder / "run"


def broken_copy(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    return copy


# -- bad input: one table, each row a command and what its error says -----------------------------------
def _files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "empty": b"",
        "blank": b"   \n\n\t\n",
        "binary": bytes(range(256)) * 4,
        "latin1": "café crème brûlée\n".encode("latin-1") * 200,
        "tiny": b"To be or not to be\n" * 3,
    }
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / f"{name}.txt"
        paths[name].write_bytes(content)
    return paths


BAD_TRAIN = [
    ("empty", [], "empty"),
    ("blank", [], "empty"),
    ("binary", [], "binary"),
    ("latin1", [], "--encoding"),
    ("tiny", ["--block-size", "128"], "fewer than one window"),
    ("tiny", ["--val-fraction", "0"], "validation split"),
    ("tiny", ["--model", "transformer-xl"], "unknown model"),
    ("tiny", ["--preset", "no-such-preset"], "unknown preset"),
    ("tiny", ["--tokenizer", "no-such-tokenizer", "--block-size", "8"], "tokenizer"),
    ("tiny", ["--val-fraction", "1.5"], "--val-fraction"),
    ("tiny", ["--epochs", "0"], "--epochs"),
    ("tiny", ["--lr", "-1"], "--lr"),
    ("tiny", ["--device", "cuda:7", "--block-size", "8"], "cuda"),
]


@pytest.mark.parametrize("file, flags, message", BAD_TRAIN, ids=[f"{f}:{' '.join(a) or '-'}" for f, a, _ in BAD_TRAIN])
def test_bad_training_input(tmp_path, capsys, file, flags, message):
    path = _files(tmp_path)[file]
    code, _, err = run_cli(capsys, "train", "--data", path, "--out", tmp_path / "out", "--quiet", *flags)
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert message in err
    assert not (tmp_path / "out").exists()  # nothing half-made that a corrected command would trip over


def test_latin1_file_trains_with_an_encoding(tmp_path, capsys):
    path = _files(tmp_path)["latin1"]
    code, _, err = run_cli(capsys, "train", "--data", path, "--encoding", "latin-1", "--out", tmp_path / "out",
                           "--quiet", "--block-size", "16", "--hidden", "8", "--embed", "4", "--layers", "1",
                           "--epochs", "1")
    assert code == 0, err
    assert "é" in tinylm.load(tmp_path / "out").tokenizer.backend.get_vocab()


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "0"], "--temperature"), (["--temperature", "-1"], "--temperature"),
    (["--temperature", "nan"], "--temperature"), (["--temperature", "inf"], "--temperature"),
    (["--top-k", "0"], "--top-k"), (["--top-k", "100000"], "--top-k"), (["--top-p", "0"], "--top-p"),
    (["--top-p", "1.01"], "--top-p"), (["--max-new-tokens", "-1"], "--max-new-tokens"),
    (["--max-new-tokens", "100000000"], "--max-new-tokens"), (["--num-samples", "0"], "--num-samples"),
])
def test_bad_sampling_input(run_dir, capsys, flags, message):
    code, out, err = run_cli(capsys, "sample", run_dir, *flags)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1


def test_prompt_with_unknown_characters_is_read_as_unk(run_dir, capsys):
    code, out, err = run_cli(capsys, "sample", run_dir, "--prompt", "Ωmega ☃", "--max-new-tokens", 10, "--seed", 1)
    assert code == 0 and out.startswith("Ωmega ☃")
    assert "'Ω'" in err and "'☃'" in err


@pytest.mark.parametrize("damage, message", [
    ("missing_dir", "does not exist"),
    ("no_config", "config.json not found"),
    ("bad_config", "not valid JSON"),
    ("no_tokenizer", "no tokenizer.json"),
    ("no_weights", "model.safetensors not found"),
    ("truncated_weights", "truncated or corrupted"),
    ("garbage_weights", "truncated or corrupted"),
    ("mismatched_config", "does not match"),
    ("mismatched_tokenizer", "tokens but the model expects"),
])
def test_damaged_run_directory(run_dir, tmp_path, capsys, damage, message):
    copy = broken_copy(run_dir, tmp_path)
    if damage == "missing_dir":
        shutil.rmtree(copy)
    elif damage == "no_config":
        (copy / "config.json").unlink()
    elif damage == "bad_config":
        (copy / "config.json").write_text("{not json")
    elif damage == "no_tokenizer":
        (copy / "tokenizer.json").unlink()
    elif damage == "no_weights":
        (copy / "model.safetensors").unlink()
    elif damage == "truncated_weights":
        data = (copy / "model.safetensors").read_bytes()
        (copy / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "garbage_weights":
        (copy / "model.safetensors").write_bytes(os.urandom(4096))
    elif damage == "mismatched_config":
        config = json.loads((copy / "config.json").read_text())
        config["model"]["hidden"] += 8
        (copy / "config.json").write_text(json.dumps(config))
    elif damage == "mismatched_tokenizer":
        config = json.loads((copy / "config.json").read_text())
        config["model"]["vocab_size"] += 1
        (copy / "config.json").write_text(json.dumps(config))
    for command in (["sample", copy, "--max-new-tokens", 5], ["eval", copy, "--json"]):
        code, out, err = run_cli(capsys, *command)
        assert code == 2 and out == "", err
        assert message in err and len(err.strip().splitlines()) == 1


def test_resume_errors(run_dir, tmp_path, capsys):
    copy = broken_copy(run_dir, tmp_path)
    code, _, err = run_cli(capsys, "train", "--resume", copy, "--epochs", 1)
    assert code == 2 and "already has 1 epochs" in err
    code, _, err = run_cli(capsys, "train", "--resume", tmp_path / "nothing", "--epochs", 2)
    assert code == 2 and "no such run directory" in err
    shutil.rmtree(copy / "checkpoint")
    (copy / "config.json").write_text("[]")
    code, _, err = run_cli(capsys, "train", "--resume", copy, "--epochs", 2)
    assert code == 2 and "config" in err


def test_existing_folders_are_protected(run_dir, tmp_path, capsys):
    copy = broken_copy(run_dir, tmp_path)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    corpus = tmp_path / "c.txt"
    corpus.write_text("abcdefgh " * 400)
    code, _, err = run_cli(capsys, "train", "--data", corpus, "--out", copy, "--quiet")
    assert code == 2 and "--overwrite" in err
    assert before == {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    other = tmp_path / "not-a-run"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, "train", "--data", corpus, "--out", other, "--overwrite", "--quiet")
    assert code == 2 and "is not a tinylm run" in err and (other / "notes.txt").read_text() == "mine"


# -- untrusted files -------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this runs a command that leaves a marker file: proof that code was executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_planted_as_weights_is_never_executed(run_dir, tmp_path, capsys):
    copy = broken_copy(run_dir, tmp_path)
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"state_dict": _Payload(marker)})
    (copy / "model.safetensors").write_bytes(evil)
    (copy / "checkpoint" / "model.safetensors").write_bytes(evil)
    (copy / "checkpoint" / "optimizer.safetensors").write_bytes(evil)
    (copy / "checkpoint" / "rng.safetensors").write_bytes(evil)
    for command in (["sample", copy], ["eval", copy], ["train", "--resume", copy, "--epochs", 2, "--quiet"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 2 and "safetensors" in err or "damaged" in err
    with pytest.raises(tinylm.TinyLMError):
        tinylm.load(copy)
    assert not marker.exists()


def test_no_torch_load_in_the_package():
    """Loading goes through safetensors and JSON only; a torch.load would need weights_only=True."""
    package = Path(tinylm.__file__).parent
    offenders = [p for p in package.rglob("*.py") if "torch.load(" in p.read_text() and "weights_only=True" not in
                 p.read_text()]
    offenders += [p for p in package.rglob("*.py") if "pickle.load" in p.read_text()]
    assert offenders == []


# -- crashes ---------------------------------------------------------------------------------------------
TRAIN_ARGS = ["--model", "lstm", "--hidden", "24", "--embed", "8", "--layers", "1", "--block-size", "32",
              "--batch-size", "16",
              "--lr", "0.01", "--warmup-steps", "5", "--dropout", "0.1", "--lr-schedule", "cosine",
              "--checkpoint-every", "5", "--sample-tokens", "20", "--quiet", "--seed", "3",
              "--precision", "fp32"]  # auto's probe may pick bf16 in one process and fp32 in another


def _tinylm(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tinylm", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _final(run: Path):
    metrics = [(r["epoch"], r["train_loss"], r["val_loss"]) for r in map(json.loads, (run / "metrics.jsonl").open())]
    return load_file(str(run / "checkpoint" / "model.safetensors")), load_file(str(run / "model.safetensors")), metrics


def _same(a, b) -> bool:
    return all(x.keys() == y.keys() and all((x[k] == y[k]).all() for k in x) for x, y in zip(a[:2], b[:2])) \
        and a[2] == b[2]


@pytest.fixture(scope="module")
def crash_corpus(tmp_path_factory, data_dir):
    path = tmp_path_factory.mktemp("crash") / "corpus.txt"
    path.write_text((data_dir / "tinyshakespeare/input.txt").read_text()[:24_000])
    return path


@pytest.fixture(scope="module")
def uninterrupted(crash_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    proc = _tinylm("train", "--data", crash_corpus, "--epochs", 4, "--out", out, *TRAIN_ARGS)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return _final(out)


def _wait_for(predicate, proc, timeout=120.0) -> bool:
    """Poll until predicate() holds; False if the process ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    raise TimeoutError


def _checkpoint_step(run: Path) -> int:
    try:
        return json.loads((run / "checkpoint" / "state.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return -1


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_result(crash_corpus, uninterrupted, tmp_path):
    """SIGKILL at four moments: before the first checkpoint, then at random points past random steps of
    the 4-epoch run (inside epochs, around evaluations and checkpoint writes); each time `--resume`."""
    out = tmp_path / "run"
    rng = random.Random(2024)
    total_steps = 4 * 42  # 21,600 training chars / 32 per window = 675 windows, batch 16 -> 42 steps an epoch
    targets = sorted(rng.sample(range(5, total_steps - 10), 3))
    proc = _tinylm("train", "--data", crash_corpus, "--epochs", 4, "--out", out, *TRAIN_ARGS)
    # moment 1: the run directory exists, no checkpoint yet
    assert _wait_for(lambda: (out / "config.json").exists(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    kills = 1
    for target in targets:
        proc = _tinylm("train", "--resume", out, "--quiet")
        if not _wait_for(lambda: _checkpoint_step(out) >= target, proc):
            break
        time.sleep(rng.uniform(0.0, 0.4))  # somewhere between this checkpoint and a later one
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
    finished = (out / "summary.json").is_file()  # a kill after the run's last file: nothing left to resume
    if (proc.poll() is not None and proc.returncode != 0 or proc.returncode == -signal.SIGKILL) and not finished:
        proc = _tinylm("train", "--resume", out, "--quiet")
    assert finished or proc.wait(timeout=300) == 0, proc.stderr.read()
    assert kills == 4
    assert _same(_final(out), uninterrupted)


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_the_run(crash_corpus, uninterrupted, tmp_path):
    out = tmp_path / "run"
    proc = _tinylm("train", "--data", crash_corpus, "--epochs", 4, "--out", out, *TRAIN_ARGS)
    deadline = time.time() + 120
    while not (out / "checkpoint" / "state.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and "Traceback" not in err
    assert json.loads((out / "checkpoint" / "state.json").read_text())["finished"] is False
    proc = _tinylm("train", "--resume", out, "--quiet")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert _same(_final(out), uninterrupted)
