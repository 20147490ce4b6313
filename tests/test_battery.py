"""The adversarial battery: bad input of every kind, across the commands, as a user (or an attacker) makes it.

Every case must end in one of two ways: the command works, or it prints ONE line on stderr and exits with
code 2. Never a traceback, never an invalid value accepted, never a file lost. Kinds:

    values      invalid flag values (refused, not accepted)
    damaged     a run's files damaged in every way a disk, an editor or a stranger can damage them
    filesystem  where the output goes: `.`, a parent, a symlink, a mount point, read-only, a full disk
    extras      an optional package missing
    hostile     a config.json made to hang, to allocate terabytes or to read a local file
    concurrency two commands writing the same folder (subprocesses)
    kill        SIGKILL during export (subprocesses)

The tiny runs are made once for the module. `python tests/test_battery.py` prints the counts by kind
(docs/reliability.md has the table of what each case gets).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file, save_file

import tinylm
from tinylm.cli import main as cli_main
from tinylm.models import model_config

QUIET = {"progress": False, "echo": lambda s: None}
TINY_TRAIN = ["--hidden", "16", "--embed", "8", "--layers", "1", "--block-size", "16", "--epochs", "1", "--quiet",
              "--sample-tokens", "5", "--batch-size", "32", "--precision", "fp32"]


# -- the tiny runs, made once ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir):
    """A corpus, an LSTM run and a GPT run, each trained in about a second."""
    root = tmp_path_factory.mktemp("battery")
    corpus = root / "corpus.txt"
    corpus.write_text((data_dir / "tinyshakespeare/input.txt").read_text()[:12_000])
    tinylm.train(tiny_config(corpus, epochs=1, precision="fp32", sample_tokens=5), out=root / "lstm", **QUIET)
    gpt = tinylm.RunConfig(data=tinylm.DataConfig(source=str(corpus), block_size=16),
                           model=model_config("gpt", embed=16, layers=1, heads=2, dropout=0.0),
                           train=tinylm.TrainConfig(epochs=1, max_steps=3, batch_size=16, sample_tokens=5,
                                                    precision="fp32"))
    tinylm.train(gpt, out=root / "gpt", **QUIET)
    return {"root": root, "corpus": corpus, "lstm": root / "lstm", "gpt": root / "gpt"}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: what a refused command must leave as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run the CLI in this process; an exception escaping it is a traceback and fails the test."""
    try:
        code = cli_main([str(a) for a in args])
    except BaseException:
        _record("traceback", args)
        raise
    out = capsys.readouterr()
    one_line = code == 2 and len(out.err.strip().splitlines()) == 1 and out.err.startswith("error: ")
    _record("one-line exit 2" if one_line else f"exit {code}", args, out.err.strip().splitlines()[-1:])
    return code, out.out, out.err


def _record(outcome: str, args=(), answer=()) -> None:
    """With TINYLM_BATTERY_COUNTS=FILE, each in-process command's outcome, arguments and last stderr line are
    appended to FILE as a JSON line (see __main__)."""
    if os.environ.get("TINYLM_BATTERY_COUNTS"):
        with open(os.environ["TINYLM_BATTERY_COUNTS"], "a") as f:
            f.write(json.dumps({"outcome": outcome, "args": [str(a) for a in args], "answer": list(answer)}) + "\n")


def assert_refused(result, *needles: str) -> str:
    code, out, err = result
    assert code == 2, f"exit {code}; stderr: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in err, err
    return lines[0]


def copy_run(world, name: str, tmp_path: Path) -> Path:
    copy = tmp_path / name
    shutil.copytree(world[name], copy)
    return copy


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# -- values -----------------------------------------------------------------------------------------------
VALUES = [
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--grad-clip", "nan"], "--grad-clip"),
    (["--eval-batch-size", "0"], "--eval-batch-size"),
    (["--threads", "0"], "--threads"),
    (["--time-budget", "-5"], "--time-budget"),
    (["--time-budget", "nan"], "--time-budget"),
    (["--lr", "inf"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--seed", str(2**64)], "--seed"),
    (["--seed", "-1"], "--seed"),
]


@pytest.mark.parametrize("flags, needle", VALUES, ids=[" ".join(f) for f, _ in VALUES])
def test_values_train(world, tmp_path, capsys, flags, needle):
    out = tmp_path / "out"
    assert_refused(cli(capsys, "train", "--data", world["corpus"], "--out", out, *TINY_TRAIN, *flags), needle)
    assert not out.exists()  # nothing that blocks the corrected command


def test_values_diverging_lr_leaves_nothing_behind(world, tmp_path, capsys):
    """A learning rate that makes the loss NaN at the first step: refused, and no half-made run stays."""
    out = tmp_path / "out"
    assert_refused(cli(capsys, "train", "--data", world["corpus"], "--out", out, *TINY_TRAIN, "--lr", "500",
                       "--warmup-steps", "0", "--grad-clip", "0"), "lower --lr", "No checkpoint exists yet")
    assert not out.exists()
    code, _, err = cli(capsys, "train", "--data", world["corpus"], "--out", out, *TINY_TRAIN)
    assert code == 0, err


@pytest.mark.parametrize("args, needle", [
    (["sample", "{lstm}", "--seed", "-1"], "--seed"),
    (["sample", "{lstm}", "--seed", str(2**70)], "--seed"),
    (["sample", "{lstm}", "--prompt", "ab\udcffcd"], "UTF-8"),
    (["serve", "{lstm}", "--port", "0"], "--port"),
    (["serve", "{lstm}", "--port", "99999"], "--port"),
    (["serve", "{lstm}", "--port", "-1"], "--port"),
    (["sample", "runs/nope"], "does not exist"),
    (["eval", "runs/nope"], "does not exist"),
    (["train", "--resume", "runs/nope"], "no such run directory"),
])
def test_values_other_commands(world, capsys, monkeypatch, args, needle):
    import tinylm.publishing.hub

    monkeypatch.setattr(tinylm.publishing.hub, "download_run",
                        lambda *a, **k: pytest.fail("a local path went to the Hub"))
    assert_refused(cli(capsys, *[a.format(**world) for a in args]), needle)


def test_values_prepared_ids_past_the_vocabulary(world, tmp_path, capsys):
    prepared = tmp_path / "prepared"
    assert cli(capsys, "prepare", world["corpus"], "--out", prepared, "--quiet")[0] == 0
    meta = json.loads((prepared / "tokens.json").read_text())
    ids = bytearray((prepared / "train.bin").read_bytes())
    ids[0:2] = (meta["vocab_size"] + 5).to_bytes(2, "little")
    (prepared / "train.bin").write_bytes(bytes(ids))
    assert_refused(cli(capsys, "train", "--data", prepared, "--out", tmp_path / "out", *TINY_TRAIN),
                   "past the vocabulary")


# -- damaged files ----------------------------------------------------------------------------------------
def _config(change):
    return lambda run: edit_json(run / "config.json", change)


def _state(change):
    return lambda run: edit_json(run / "checkpoint" / "state.json", change)


def _truncate(name):
    def damage(run):
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: len(data) // 2])
    return damage


def _tensors(name, change):
    def damage(run):
        tensors = load_file(str(run / "checkpoint" / name))
        save_file(change(tensors), str(run / "checkpoint" / name))
    return damage


def _nan_weights(run):
    tensors = load_file(str(run / "model.safetensors"))
    save_file({k: torch.full_like(v, float("nan")) for k, v in tensors.items()}, str(run / "model.safetensors"),
              metadata={"format": "pt"})


DAMAGED = {  # name: (damage, commands it is tried with, what the error names)
    "format_version a string": (_config(lambda c: c.update(format_version="1")), "load", "format_version"),
    "format_version 99": (_config(lambda c: c.update(format_version=99)), "load", "newer tinylm"),
    "hidden 32.0": (_config(lambda c: c["model"].update(hidden=32.0)), "load", "hidden"),
    "seed 'abc'": (_config(lambda c: c["train"].update(seed="abc")), "load", "seed"),
    "source 123": (_config(lambda c: c["data"].update(source=123)), "load", "source"),
    "block_size null": (_config(lambda c: c["data"].update(block_size=None)), "load", "block_size"),
    "betas of three": (_config(lambda c: c["train"].update(betas=[0.9, 0.9, 0.9])), "load", "betas"),
    "unknown train key": (_config(lambda c: c["train"].update(colour="red")), "load", "colour"),
    "model a list": (_config(lambda c: c.update(model=[1])), "load", "model"),
    "config a list": (lambda run: (run / "config.json").write_text("[1]"), "load", "config"),
    "config not UTF-8": (lambda run: (run / "config.json").write_bytes(b"\xff\xfe{"), "load", "config.json"),
    "config nested 100000 deep": (lambda run: (run / "config.json").write_text("[" * 100_000 + "]" * 100_000),
                                  "load", "config.json"),
    "tokenizer_config garbage": (lambda run: (run / "tokenizer_config.json").write_text("garbage{"), "load",
                                 "tokenizer_config.json"),
    "tokenizer_config a list": (lambda run: (run / "tokenizer_config.json").write_text("[1, 2]"), "load",
                                "tokenizer_config.json"),
    "NaN weights": (_nan_weights, "load", "NaN"),
    "state.json truncated": (_truncate("checkpoint/state.json"), "resume", "state.json"),
    "state.json unknown key": (_state(lambda s: s.update(mood="good")), "resume", "mood"),
    "state.json epoch a string": (_state(lambda s: s.update(epoch="1")), "resume", "epoch"),
    "state.json negative step": (_state(lambda s: s.update(step=-4)), "resume", "step"),
    "metrics.jsonl garbage line": (lambda run: (run / "metrics.jsonl").open("a").write("{oops\n"), "resume",
                                   "metrics.jsonl"),
    "optimizer tensor of the wrong shape": (_tensors("optimizer.safetensors", lambda t: {
        k: (torch.zeros(3, 3) if v.dim() else v) for k, v in t.items()}), "resume", "shape"),
    "rng state of the wrong size": (_tensors("rng.safetensors", lambda t: {
        k: v[:100].clone() for k, v in t.items()}), "resume", "random generator"),
    "optimizer.json a list": (lambda run: (run / "checkpoint" / "optimizer.json").write_text("[]"), "resume",
                              "damaged"),
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_damaged(world, tmp_path, capsys, name):
    damage, where, needle = DAMAGED[name]
    run = copy_run(world, "lstm", tmp_path)
    damage(run)
    if where == "load":
        commands = [["sample", run, "--max-new-tokens", 3], ["eval", run, "--json"]]
    else:
        commands = [["train", "--resume", run, "--epochs", 2, "--quiet"]]
    for command in commands:
        assert_refused(cli(capsys, *command), needle)


# -- filesystem -------------------------------------------------------------------------------------------
def test_out_dot_overwrite_keeps_the_working_folder(world, tmp_path, capsys, monkeypatch):
    """`tinylm train --out . --overwrite` once deleted the whole working folder."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "thesis.tex").write_text("years of work")
    monkeypatch.chdir(work)
    before = snapshot(work)
    line = assert_refused(cli(capsys, "train", "--data", world["corpus"], "--out", ".", "--overwrite",
                              *TINY_TRAIN), "current folder")
    assert snapshot(work) == before, line
    assert_refused(cli(capsys, "train", "--data", world["corpus"], "--out", "..", "--overwrite", *TINY_TRAIN),
                   "parent of the current folder")
    assert (work / "thesis.tex").read_text() == "years of work"


def test_out_a_run_with_other_files_is_not_replaced(world, tmp_path, capsys):
    run = copy_run(world, "lstm", tmp_path)
    (run / "notes.txt").write_text("mine")
    before = snapshot(run)
    assert_refused(cli(capsys, "train", "--data", world["corpus"], "--out", run, "--overwrite", *TINY_TRAIN),
                   "notes.txt")
    assert snapshot(run) == before


@pytest.mark.parametrize("kind", ["symlink", "file", "mount point"])
def test_out_special(world, tmp_path, capsys, monkeypatch, kind):
    out = tmp_path / "out"
    target = tmp_path / "elsewhere"
    target.mkdir()
    if kind == "symlink":
        out.symlink_to(target)
    elif kind == "file":
        out.write_text("precious")
    else:
        out.mkdir()
        real = os.path.ismount
        monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == out.resolve() or real(p))
    assert_refused(cli(capsys, "train", "--data", world["corpus"], "--out", out, *TINY_TRAIN), kind.split()[0])
    if kind == "file":
        assert out.read_text() == "precious"


def test_plot_and_temperature_outputs(world, tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    assert_refused(cli(capsys, "plot", "softmax", "--out", folder), "is a folder")
    file = tmp_path / "file"
    file.write_text("precious")
    assert_refused(cli(capsys, "temperature", world["lstm"], "--out", file, "--samples", 1,
                       "--max-new-tokens", 5), "not a folder")
    (folder / "mine.txt").write_text("mine")
    assert_refused(cli(capsys, "temperature", world["lstm"], "--out", folder, "--samples", 1,
                       "--max-new-tokens", 5), "not a temperature report")
    assert file.read_text() == "precious" and (folder / "mine.txt").read_text() == "mine"


def _fail_writes(monkeypatch, code: int, after: int = 0):
    """Every atomic write after the first `after` ones fails with `code` (EROFS, ENOSPC, EACCES): the disk
    as a read-only mount, a full disk or a folder without permission would make it (CI runs as root, where
    chmod does not stop writes)."""
    import tinylm.io

    real = tinylm.io.atomic_path
    calls = Counter()

    def failing(target):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(code, os.strerror(code), str(target))
        return real(target)

    for module in ("tinylm.io", "tinylm.models.weights", "tinylm.plots"):
        monkeypatch.setattr(f"{module}.atomic_path", failing)


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.EACCES])
def test_resume_on_a_failing_disk_loses_nothing(world, tmp_path, capsys, monkeypatch, code):
    run = copy_run(world, "lstm", tmp_path)
    before = snapshot(run)
    _fail_writes(monkeypatch, code)
    assert_refused(cli(capsys, "train", "--resume", run, "--epochs", 3, "--quiet"), os.strerror(code))
    assert snapshot(run) == before
    monkeypatch.undo()
    assert cli(capsys, "sample", run, "--max-new-tokens", 3)[0] == 0


def test_disk_full_in_the_middle_of_a_checkpoint_keeps_the_last_one(world, tmp_path, capsys, monkeypatch):
    run = copy_run(world, "lstm", tmp_path)
    checkpoint = snapshot(run / "checkpoint")
    _fail_writes(monkeypatch, errno.ENOSPC, after=3)  # config.json, then into the next checkpoint
    edit_json(run / "config.json", lambda c: c["train"].update(checkpoint_every=1))
    assert_refused(cli(capsys, "train", "--resume", run, "--epochs", 2, "--quiet"), "No space left")
    monkeypatch.undo()
    assert snapshot(run / "checkpoint") == checkpoint  # the last complete checkpoint, untouched
    assert not list(run.glob("checkpoint.*")) and not list(run.glob(".*.tmp"))
    assert cli(capsys, "train", "--resume", run, "--epochs", 2, "--quiet")[0] == 0


@pytest.mark.parametrize("command", ["train", "prepare", "export", "dry-run"])
def test_read_only_destination(world, tmp_path, capsys, monkeypatch, command):
    import tinylm.folders

    def read_only(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(tinylm.folders, "make_dir", read_only)
    out = tmp_path / "out"
    args = {"train": ["train", "--data", world["corpus"], "--out", out, *TINY_TRAIN],
            "prepare": ["prepare", world["corpus"], "--out", out, "--quiet"],
            "export": ["export", world["gpt"], out],
            "dry-run": ["push", world["lstm"], "--repo", "alice/x", "--dry-run", out]}[command]
    assert_refused(cli(capsys, *args), "Read-only file system")
    assert not out.exists()


def test_export_never_overwrites_another_run(world, tmp_path, capsys):
    """`tinylm export GPT OTHER_RUN --overwrite` once wrecked the other run."""
    other = copy_run(world, "lstm", tmp_path)
    before = snapshot(other)
    assert_refused(cli(capsys, "export", world["gpt"], other, "--overwrite"), "is not a transformers export")
    assert snapshot(other) == before
    for command in (["prepare", world["corpus"], "--out", other, "--overwrite", "--quiet"],
                    ["push", world["gpt"], "--repo", "alice/x", "--dry-run", "."]):
        assert_refused(cli(capsys, *command))
    assert snapshot(other) == before
    out = tmp_path / "hf"
    assert cli(capsys, "export", world["gpt"], out)[0] == 0
    (out / "notes.txt").write_text("mine")
    assert_refused(cli(capsys, "export", world["gpt"], out, "--overwrite"), "notes.txt")
    (out / "notes.txt").unlink()
    assert cli(capsys, "export", world["gpt"], out, "--overwrite")[0] == 0


def test_files_get_the_umask(world, tmp_path, capsys):
    old = os.umask(0o027)
    try:
        assert cli(capsys, "train", "--data", world["corpus"], "--out", tmp_path / "run", *TINY_TRAIN)[0] == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").rglob("*")}
    assert modes and all(mode == (0o750 if (tmp_path / "run" / name).is_dir() or name == "checkpoint" else 0o640)
                         for name, mode in modes.items()), modes


def test_stale_temporaries_are_removed_by_the_next_resume(world, tmp_path, capsys):
    run = copy_run(world, "lstm", tmp_path)
    shutil.copytree(run / "checkpoint", run / "checkpoint.old")
    (run / "checkpoint.tmp").mkdir()
    (run / ".metrics.jsonl.1234abcd.tmp").write_text("half")
    (tmp_path / ".lstm.0123456789ab.tmp").mkdir()  # a killed command's staging folder beside the run
    assert cli(capsys, "train", "--resume", run, "--epochs", 2, "--quiet")[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert not {"checkpoint.old", "checkpoint.tmp", ".metrics.jsonl.1234abcd.tmp"} & {p.name for p in run.iterdir()}


# -- extras -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("package, args", [
    ("transformers", ["finetune", "--base", "gpt2", "--data", "{corpus}", "--out", "{root}/ft"]),
    ("datasets", ["train", "--data", "hf:someone/data", "--out", "{root}/hfdata", *TINY_TRAIN]),
    ("wandb", ["train", "--data", "{corpus}", "--out", "{root}/wb", "--logger", "wandb", *TINY_TRAIN]),
    ("gradio", ["serve", "{lstm}"]),
])
def test_missing_extra(world, capsys, monkeypatch, package, args):
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)  # import fails as when the package is not installed
    assert_refused(cli(capsys, *[str(a).format(**world) for a in args]), "pip install")


# -- hostile configs --------------------------------------------------------------------------------------
HOSTILE = {
    "layers 1000000": lambda c: c["model"].update(layers=1_000_000),
    "block_size 10**12": lambda c: c["data"].update(block_size=10**12),
    "hidden 10**6": lambda c: c["model"].update(hidden=10**6),
    "vocab_size 10**9": lambda c: c["model"].update(vocab_size=10**9),
    "wide and deep": lambda c: c["model"].update(layers=200, hidden=60_000),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_config_is_refused_before_building(world, tmp_path, capsys, name):
    run = copy_run(world, "lstm", tmp_path)
    edit_json(run / "config.json", HOSTILE[name])
    start = time.perf_counter()
    assert_refused(cli(capsys, "sample", run, "--max-new-tokens", 3), "limit")
    assert time.perf_counter() - start < 10


def test_a_hub_run_never_reads_local_files_its_config_names(world, tmp_path, capsys, monkeypatch):
    import tinylm.publishing.hub

    secret = tmp_path / "secret.txt"
    secret.write_text("the password is swordfish " * 500)
    run = copy_run(world, "lstm", tmp_path)
    edit_json(run / "config.json", lambda c: c["data"].update(source=str(secret)))
    monkeypatch.setattr(tinylm.publishing.hub, "is_downloaded", lambda path: True)  # as if it came from the Hub
    for command in (["eval", run], ["eval", run, "--memorisation", "--samples", 1, "--max-new-tokens", 5],
                    ["temperature", run, "--samples", 1, "--max-new-tokens", 5, "--out", tmp_path / "t"]):
        code, out, err = cli(capsys, *command)
        assert "swordfish" not in out + err
        assert_refused((code, out, err), "not read")
    assert cli(capsys, "sample", run, "--max-new-tokens", 3)[0] == 0  # sampling needs no data


@pytest.mark.parametrize("source", ["/etc/shadow-or-anything", "/dev/zero", "/proc/self/environ", "fifo"])
def test_a_local_run_never_reads_special_files(world, tmp_path, capsys, source):
    if source == "fifo":
        source = str(tmp_path / "fifo")
        os.mkfifo(source)
    run = copy_run(world, "lstm", tmp_path)
    edit_json(run / "config.json", lambda c: c["data"].update(source=source))
    code, out, err = cli(capsys, "eval", run)
    if source.startswith("/etc"):
        assert code == 2  # an absolute path the run was trained with is read; this one does not exist
    else:
        assert_refused((code, out, err), "not read")


def test_a_local_run_reads_its_data_relative_to_itself(world, tmp_path, capsys, monkeypatch):
    run = copy_run(world, "lstm", tmp_path)
    shutil.copy(world["corpus"], run / "data.txt")
    edit_json(run / "config.json", lambda c: c["data"].update(source="./data.txt"))
    monkeypatch.chdir(world["root"])  # elsewhere: ./data.txt is the run's, not the working folder's
    code, out, err = cli(capsys, "eval", run, "--json")
    assert code == 0, err


# -- concurrency ------------------------------------------------------------------------------------------
def _tinylm(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tinylm", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_two_trainings_into_one_folder(world, tmp_path):
    """The second is refused while the first runs; after the first is killed, its stale lock is taken over."""
    out = tmp_path / "run"
    lock = tmp_path / ".run.lock"
    # far longer than the test (it is killed below): on a busy machine the second process may take a minute
    # to start, and a first one that had finished by then would have released its lock
    first = _tinylm("train", "--data", world["corpus"], "--out", out, *TINY_TRAIN, "--epochs", "100000",
                    "--time-budget", "1800")
    try:
        deadline = time.time() + 60
        while not (lock.exists() and (out / "config.json").exists()) and time.time() < deadline:
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "tinylm", "train", "--data", str(world["corpus"]), "--out",
                                 str(out), "--overwrite", *TINY_TRAIN], capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "is being written by process" in second.stderr, second.stderr
        assert str(first.pid) in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert first.poll() is None, "the first training ended before it was killed"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert lock.exists()  # left by the killed process: stale
    finally:
        first.kill()  # whatever failed above, no training is left running
        first.wait(timeout=30)
    again = subprocess.run([sys.executable, "-m", "tinylm", "train", "--data", str(world["corpus"]), "--out",
                            str(out), "--overwrite", *TINY_TRAIN], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert not lock.exists()  # taken over, then released


# -- kill -9 during export --------------------------------------------------------------------------------
def test_kill_during_export_leaves_the_old_folder_or_the_new_one(world, tmp_path):
    out = tmp_path / "hf"
    code = subprocess.run([sys.executable, "-m", "tinylm", "export", str(world["gpt"]), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert code.returncode == 0, code.stderr
    complete = {name: (out / name).read_bytes() for name in os.listdir(out)}
    outcomes = Counter()
    for delay in (0.0, 0.003, 0.01, 0.03):
        proc = _tinylm("export", world["gpt"], out, "--overwrite")
        deadline = time.time() + 60
        while not list(tmp_path.glob(".hf.*.tmp")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.001)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # whole: exactly the export's files, byte for byte (the export is deterministic)
        assert {name: (out / name).read_bytes() for name in os.listdir(out)} == complete
        outcomes["killed" if proc.returncode == -signal.SIGKILL else "finished"] += 1
    code = subprocess.run([sys.executable, "-m", "tinylm", "export", str(world["gpt"]), str(out), "--overwrite"],
                          capture_output=True, text=True, timeout=120)
    assert code.returncode == 0, code.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # stale staging cleaned
    assert outcomes["killed"] >= 1


# -- round three: what a larger battery found ----------------------------------------------------------------
def test_a_refused_resume_leaves_the_run_as_it_was(world, tmp_path, capsys, monkeypatch):
    """`--resume RUN --precision bf16` on a CPU that cannot compute bf16 was refused after config.json had been
    rewritten with the new precision: every later resume of the run on that CPU then failed."""
    run = copy_run(world, "lstm", tmp_path)
    before = snapshot(run)
    monkeypatch.setenv("TINYLM_CPU_BF16", "0")
    monkeypatch.setattr("tinylm.machine.devices.bf16_packing_supported", lambda: False)  # a CPU without bf16 kernels
    assert_refused(cli(capsys, "train", "--resume", run, "--epochs", 2, "--precision", "bf16", "--quiet"), "bf16")
    assert snapshot(run) == before
    assert_refused(cli(capsys, "train", "--resume", run, "--epochs", 2, "--device", "cuda", "--quiet"), "cuda")
    assert snapshot(run) == before
    assert cli(capsys, "train", "--resume", run, "--epochs", 2, "--quiet")[0] == 0  # the run still resumes


@pytest.mark.parametrize("target", ["a user's file", "nothing (dangling)"])
def test_a_lock_that_is_a_symbolic_link_is_never_followed(world, tmp_path, target):
    """A real process: the lock file beside the run is a symlink to a user's file, or to a path that does not
    exist; following it overwrote the user's file (or created one outside the run)."""
    out = tmp_path / "run"
    precious = tmp_path / "precious.txt"
    if target == "a user's file":
        precious.write_text("years of work")
    (tmp_path / ".run.lock").symlink_to(precious)
    result = subprocess.run([sys.executable, "-m", "tinylm", "train", "--data", str(world["corpus"]), "--out",
                             str(out), *TINY_TRAIN], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "symbolic link" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (precious.read_text() == "years of work") if target == "a user's file" else not precious.exists()
    assert not out.exists()


CSV_DAMAGE = {
    "a row without a step": lambda run: (run / "steps.csv").write_text("when,what\nnow,that\n"),
    "a step that is not a number": lambda run: (run / "steps.csv").write_text("step,train/loss\nabc,1.0\n"),
    "epochs.csv not UTF-8": lambda run: (run / "epochs.csv").write_bytes(b"epoch,step\n\xff\xfe,1\n"),
}


@pytest.mark.parametrize("damage", list(CSV_DAMAGE))
def test_a_resume_checks_the_csv_logs_before_it_writes(world, tmp_path, capsys, damage):
    run = tmp_path / "csv"
    assert cli(capsys, "train", "--data", world["corpus"], "--out", run, *TINY_TRAIN, "--logger", "csv")[0] == 0
    CSV_DAMAGE[damage](run)
    before = snapshot(run)
    assert_refused(cli(capsys, "train", "--resume", run, "--epochs", 2, "--quiet"), ".csv")
    assert snapshot(run) == before  # config.json, metrics.jsonl and samples.jsonl as they were


def test_lightning_refusing_the_trainer_keeps_the_run(world, tmp_path):
    pytest.importorskip("lightning")
    from tinylm.training.lightning import LitCharRNN, TextDataModule, fit

    run = copy_run(world, "lstm", tmp_path)
    before = snapshot(run)
    data = TextDataModule.exercise(world["corpus"], batch_size=32)
    with pytest.raises(tinylm.TinyLMError, match="accelerator"):
        fit(LitCharRNN(data.vocab_size), data, run, overwrite=True, max_epochs=1, progress=False,
            accelerator="no-such-accelerator")
    assert snapshot(run) == before


@pytest.mark.parametrize("where", ["the base itself", "inside the base", "a parent of the base"])
def test_finetune_never_writes_into_its_base(world, tmp_path, capsys, where):
    pytest.importorskip("transformers")
    base = copy_run(world, "gpt", tmp_path / "holder")
    out = {"the base itself": base, "inside the base": base / "ft", "a parent of the base": base.parent}[where]
    before = snapshot(base.parent)
    assert_refused(cli(capsys, "finetune", "--base", base, "--data", world["corpus"], "--out", out, "--overwrite",
                       "--epochs", 1, "--quiet"), "base")
    assert snapshot(base.parent) == before


@pytest.mark.parametrize("name", ["config.json", "loss.png", "mine.txt"])
def test_an_output_file_replaces_only_a_file_of_its_kind(world, tmp_path, capsys, name):
    run = copy_run(world, "lstm", tmp_path)
    target = run / name if name != "mine.txt" else tmp_path / name
    if name == "mine.txt":
        target.write_text("mine")
    if name == "loss.png" and not target.exists():
        pytest.skip("the tiny run drew no loss.png")
    before = target.read_bytes()
    assert_refused(cli(capsys, "plot", "softmax", run, "--out", target))
    assert target.read_bytes() == before
    png = tmp_path / "plot.png"
    assert cli(capsys, "plot", "softmax", run, "--out", png)[0] == 0
    assert cli(capsys, "plot", "softmax", run, "--out", png, "--prompt", "A")[0] == 0  # a PNG replaces a PNG


@pytest.mark.parametrize("source", ["gutenberg:²", "gutenberg:١٢", "gutenberg:-5", "gutenberg:"])
def test_gutenberg_ids_are_ascii_digits(world, tmp_path, capsys, source):
    assert_refused(cli(capsys, "train", "--data", source, "--out", tmp_path / "out", *TINY_TRAIN), "gutenberg")


DAMAGED_FAMILY = {"a list": ["lstm"], "a dict": {"name": "lstm"}, "a number": 7, "null": None}


@pytest.mark.parametrize("kind", list(DAMAGED_FAMILY))
def test_a_model_family_of_the_wrong_type(world, tmp_path, capsys, kind):
    run = copy_run(world, "lstm", tmp_path)
    edit_json(run / "config.json", lambda c: c["model"].update(family=DAMAGED_FAMILY[kind]))
    for command in (["sample", run, "--max-new-tokens", 3], ["eval", run], ["train", "--resume", run, "--epochs", 2]):
        assert_refused(cli(capsys, *command), "family")


def _small_tmpfs(path: Path, size: str) -> bool:
    """Mount a tmpfs of `size` at `path` (root on Linux); False where this machine does not allow it."""
    path.mkdir()
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_full_disk_at_the_first_weights_is_one_line(world, tmp_path, capsys):
    """A real full disk (a 256 KB tmpfs: the config and tokenizer fit, a 1 MB model does not) or, where this
    machine cannot mount one, a real file-size limit (RLIMIT_FSIZE: EFBIG): one line, and no half-made run."""
    import resource

    disk = tmp_path / "disk"
    mounted = _small_tmpfs(disk, "256k")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails instead of killing
    out = disk / "run"
    try:
        if not mounted:
            resource.setrlimit(resource.RLIMIT_FSIZE, (256_000, limit[1]))
        line = assert_refused(cli(capsys, "train", "--data", world["corpus"], "--out", out, *TINY_TRAIN,
                                  "--hidden", "256", "--embed", "64"))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, handler)
        if mounted:
            assert not out.exists()  # a run that failed before its first checkpoint leaves nothing
            subprocess.run(["umount", str(disk)], check=True)
    assert ("No space left" if mounted else "File too large") in line, line
    assert not out.exists()


LIT_ARGUMENTS = {
    "vocab_size -5": {"vocab_size": -5}, "vocab_size 2.5": {"vocab_size": 2.5},
    "vocab_size '65'": {"vocab_size": "65"}, "vocab_size 10**9": {"vocab_size": 10**9},
    "lr -1": {"vocab_size": 65, "lr": -1}, "lr nan": {"vocab_size": 65, "lr": float("nan")},
    "hidden_size 0": {"vocab_size": 65, "hidden_size": 0}, "dropout 1.5": {"vocab_size": 65, "dropout": 1.5},
}


@pytest.mark.parametrize("name", list(LIT_ARGUMENTS))
def test_lit_char_rnn_checks_its_arguments(name):
    pytest.importorskip("lightning")
    from tinylm.training.lightning import LitCharRNN

    start = time.perf_counter()
    with pytest.raises(tinylm.TinyLMError) as error:
        LitCharRNN(**LIT_ARGUMENTS[name])
    assert name.split()[0].replace("_size", "") in str(error.value).replace("_size", "")
    assert time.perf_counter() - start < 5  # refused before any allocation


@pytest.mark.parametrize("fields, needle", [
    ({"vocab_size": -3}, "vocab_size"), ({"hidden": "8"}, "hidden"), ({"layers": 2.0}, "layers"),
    ({"vocab_size": 10**9}, "vocab_size"), ({"dropout": "0.1"}, "dropout"), ({"embed": True}, "embed"),
])
def test_model_config_checks_its_fields(fields, needle):
    from tinylm.models import FAMILIES, MODEL_NAMES

    for name in ("lstm", "gpt"):
        config_class = FAMILIES[MODEL_NAMES[name].family].config
        if needle in config_class.__dataclass_fields__:  # model_config leaves out fields a family does not have
            with pytest.raises(tinylm.TinyLMError, match=needle):
                model_config(name, **fields)


@pytest.fixture(scope="module")
def playground(world):
    pytest.importorskip("gradio")
    from tinylm.lab.playground import build_app

    demo = build_app([world["lstm"]])
    fn = next(f.fn for f in demo.fns.values() if f.api_name == "generate")
    return lambda *args: list(fn(*args))[-1][0]  # the status line of the last message


@pytest.mark.parametrize("args, needle", [
    ((None, 0.8, 0, 1.0, 5, "1", False), "Done"),  # no prompt: a new text, as an empty prompt
    (({"text": "A"}, 0.8, 0, 1.0, 5, "1", False), "Prompt"),
    (("A", 0.8, 0, 1.0, 3.7, "1", False), "Max new tokens"),
    (("A", 0.8, 2.5, 1.0, 5, "1", False), "Top-k"),
    (("A", "hot", 0, 1.0, 5, "1", False), "Temperature"),
    (("A", 0.8, 0, 1.0, None, "1", False), "Max new tokens"),
])
def test_the_playground_api_checks_every_value(playground, args, needle):
    assert needle in playground(*args)


def test_threads_are_capped_at_the_machine(world, tmp_path, capsys):
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    start = time.perf_counter()
    code, out, err = cli(capsys, "sample", world["lstm"], "--max-new-tokens", 3, "--threads", 1_000_000)
    assert code == 0 and torch.get_num_threads() <= cpus and "note: --threads" in err, err
    code, out, err = cli(capsys, "train", "--data", world["corpus"], "--out", tmp_path / "run", *TINY_TRAIN,
                         "--threads", 10_000)
    assert code == 0 and torch.get_num_threads() <= cpus and "note: --threads" in err, err
    assert time.perf_counter() - start < 120
    assert_refused(cli(capsys, "train", "--data", world["corpus"], "--out", tmp_path / "ddp", *TINY_TRAIN,
                       "--processes", 100_000), "--processes")
    assert not (tmp_path / "ddp").exists()


def test_bpe_training_time_is_linear_in_a_long_word(tmp_path, capsys):
    """400,000 of one character (once 69 s, quadratic in the word's length): BPE learns from bounded pieces."""
    from tinylm.tokenizers import TokenizerConfig, build_tokenizer

    corpus = tmp_path / "same.txt"
    corpus.write_text("a" * 400_000)
    start = time.perf_counter()
    assert cli(capsys, "prepare", corpus, "--tokenizer", "bpe", "--vocab-size", "300", "--out", tmp_path / "p",
               "--quiet")[0] == 0
    assert time.perf_counter() - start < 40
    tokenizer = build_tokenizer(TokenizerConfig(kind="bpe", vocab_size=300), "a" * 5000 + " ab ab")
    assert tokenizer.decode(tokenizer.encode("a" * 5000 + " ab ab")) == "a" * 5000 + " ab ab"
    assert len(tokenizer.encode("a" * 5000)) < 5000 / 8  # long runs of "a" still merged


def test_a_bad_value_of_tinylm_cpu_bf16_is_refused(world, capsys, monkeypatch):
    monkeypatch.setenv("TINYLM_CPU_BF16", "banana")
    for command in (["env"], ["sample", world["lstm"], "--max-new-tokens", 3]):
        assert_refused(cli(capsys, *command), "TINYLM_CPU_BF16")


def test_resume_names_out_among_the_flags_it_ignores(world, tmp_path, capsys):
    run = copy_run(world, "lstm", tmp_path)
    code, _, err = cli(capsys, "train", "--resume", run, "--epochs", 2, "--out", tmp_path / "elsewhere", "--quiet")
    assert code == 0 and "ignored: --out" in err, err
    assert not (tmp_path / "elsewhere").exists()


def test_target_last_with_lines_is_refused(world, tmp_path, capsys):
    out = tmp_path / "out"
    assert_refused(cli(capsys, "train", "--data", world["corpus"], "--out", out, *TINY_TRAIN, "--lines",
                       "--target", "last"), "--lines")
    assert not out.exists()


def test_a_run_an_earlier_tinylm_trained_for_a_million_epochs_still_loads(world, tmp_path, capsys):
    """Format 1 allowed `--epochs 1000000` without a budget: such a run samples, evaluates and resumes."""
    run = copy_run(world, "lstm", tmp_path)
    edit_json(run / "config.json", lambda c: (c.update(format_version=1), c["train"].update(
        epochs=1_000_000, max_steps=None, time_budget=None)))
    assert cli(capsys, "sample", run, "--max-new-tokens", 3)[0] == 0
    assert cli(capsys, "eval", run, "--json")[0] == 0


def _damaged_base(tmp_path, corpus: Path, damage: str) -> Path:
    from test_finetune import make_tiny_gpt2

    base = make_tiny_gpt2(tmp_path / "base", corpus.read_text(encoding="utf-8"))
    if damage == "NaN weights":
        tensors = load_file(str(base / "model.safetensors"))
        tensors = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in tensors.items()}
        save_file(tensors, str(base / "model.safetensors"), metadata={"format": "pt"})
    else:  # a BERT config beside GPT-2's weights: transformers would start from random weights
        from transformers import BertConfig

        BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, is_decoder=True).save_pretrained(base)
    return base


@pytest.mark.parametrize("damage, needle", [("NaN weights", "NaN"), ("BERT config, GPT-2 weights", "weights")])
def test_a_base_that_cannot_fine_tune_is_refused(world, tmp_path, capsys, damage, needle):
    pytest.importorskip("transformers")
    base = _damaged_base(tmp_path, world["corpus"], damage)
    capsys.readouterr()  # what saving the base printed
    out = tmp_path / "ft"
    assert_refused(cli(capsys, "finetune", "--base", base, "--data", world["corpus"], "--out", out, "--epochs", 1,
                       "--quiet", "--block-size", 16), needle)
    assert not out.exists()


def test_kill_during_finetune_leaves_the_base_and_a_rerun_works(world, tmp_path):
    """A real process killed at several moments of fine-tuning: the base is untouched, no temporary stays
    beside the run, and the same command with --overwrite then succeeds."""
    pytest.importorskip("transformers")
    from test_finetune import make_tiny_gpt2

    base = make_tiny_gpt2(tmp_path / "base", world["corpus"].read_text(encoding="utf-8"))
    before = snapshot(base)
    out = tmp_path / "ft"
    command = ["finetune", "--base", base, "--data", world["corpus"], "--out", out, "--epochs", 2, "--quiet",
               "--block-size", 16, "--batch-size", 16, "--overwrite"]
    killed = 0
    for seconds in (4.0, 8.0):
        proc = _tinylm(*command)
        time.sleep(seconds)
        proc.send_signal(signal.SIGKILL)
        killed += proc.wait(timeout=30) == -signal.SIGKILL
        assert snapshot(base) == before
    done = subprocess.run([sys.executable, "-m", "tinylm", *map(str, command)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert (out / "model.safetensors").is_file() and snapshot(base) == before
    assert killed >= 1  # at least one kill landed while the command ran


def test_the_python_api_refuses_bad_arguments_in_words(world, tmp_path):
    """The public entry points refuse a wrong argument with a TinyLMError (or a ValueError / TypeError) that
    names it, never an AttributeError or a torch error from deep inside."""
    calls = {
        "train config": (lambda: tinylm.train("not a config", out=tmp_path / "a"), "config"),
        "train out": (lambda: tinylm.train(tiny_config(world["corpus"]), out=3.5), "out"),
        "load None": (lambda: tinylm.load(None), "run"),
        "load number": (lambda: tinylm.load(42), "run"),
        "model_config name": (lambda: model_config(None), "model"),
        "finetune base": (lambda: tinylm.finetune(None, world["corpus"], out=tmp_path / "f"), "base"),
        "finetune config": (lambda: tinylm.finetune("gpt2", world["corpus"], config={"epochs": 1}), "config"),
        "export format": (lambda: tinylm.export_run(world["gpt"], tmp_path / "e", format="zip"), "format"),
        "export run": (lambda: tinylm.export_run(None, tmp_path / "e"), "run"),
        "push repo": (lambda: tinylm.push(world["lstm"], repo_id=None, dry_run=tmp_path / "d"), "repo"),
        "push run": (lambda: tinylm.push(None, "alice/x", dry_run=tmp_path / "d"), "run"),
        "resume epochs": (lambda: tinylm.resume(world["lstm"], epochs="3"), "epochs"),
    }
    for name, (call, needle) in calls.items():
        with pytest.raises((tinylm.TinyLMError, ValueError, TypeError)) as error:
            call()
        assert needle in str(error.value).lower(), f"{name}: {error.value!r}"
        assert not isinstance(error.value, (AttributeError, KeyError)), name


if __name__ == "__main__":  # the counts, as the closing note of the reliability issue reports them
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as counts:
        os.environ["TINYLM_BATTERY_COUNTS"] = counts.name
        status = pytest.main([__file__, "-q", "-p", "no:cacheprovider"])
        records = [json.loads(line) for line in counts if line.strip()]
    if "--answers" in sys.argv:  # each command and what it answered
        for r in records:
            print(f"{r['outcome']:<16} tinylm {' '.join(r['args'])[:110]}\n{'':<16} {' '.join(r['answer'])[:200]}")
    outcomes = Counter(r["outcome"] for r in records)
    print(f"in-process commands: {len(records)}; " + ", ".join(f"{k}: {v}" for k, v in outcomes.items()))
    raise SystemExit(status)
