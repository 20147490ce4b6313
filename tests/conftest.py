"""Shared fixtures: small corpora made in the tests, the shared corpora through TINYLM_DATA_DIR, and
tiny configs that train in about a second on a CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch the network: libraries that read these at import time must see them first.
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("WANDB_MODE", "offline")
# A relative TINYLM_DATA_DIR (the README's `../shared/data`) must hold for tests that run commands elsewhere.
if os.environ.get("TINYLM_DATA_DIR"):
    os.environ["TINYLM_DATA_DIR"] = os.path.abspath(os.environ["TINYLM_DATA_DIR"])

import tinylm  # noqa: E402
from tinylm.models import model_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's cache, and none reaches the network for corpora."""
    monkeypatch.setenv("TINYLM_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("TINYLM_OFFLINE", "1")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train fastest on one thread, and a busy shared CPU slows many threads down badly; the
    threads are restored after the module (a CLI call's --threads must not leak into other tests)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("TINYLM_DATA_DIR", REPO.parent / "shared" / "data"))
    if not (path / "tinyshakespeare" / "input.txt").is_file():
        pytest.skip(f"shared corpora not found at {path} (set TINYLM_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def shakespeare_text(data_dir) -> str:
    return (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")


@pytest.fixture
def small_corpus(tmp_path, shakespeare_text) -> Path:
    """The first 40,000 characters of Tiny Shakespeare as a file."""
    path = tmp_path / "small.txt"
    path.write_text(shakespeare_text[:40_000], encoding="utf-8")
    return path


def tiny_config(source: str | Path, *, model: str = "lstm", epochs: int = 2, **train) -> tinylm.RunConfig:
    """A model of a few thousand parameters on short windows: an epoch takes well under a second."""
    return tinylm.RunConfig(
        data=tinylm.DataConfig(source=str(source), block_size=32),
        model=model_config(model, embed=16, hidden=48, layers=1, dropout=0.0),
        train=tinylm.TrainConfig(**{"epochs": epochs, "batch_size": 32, "lr": 1e-2, "warmup_steps": 5,
                                    "sample_tokens": 40, **train}),
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, data_dir):
    """One tiny LSTM run shared by the tests that only read a run."""
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:40_000]
    folder = tmp_path_factory.mktemp("trained")
    (folder / "corpus.txt").write_text(text, encoding="utf-8")
    run = tinylm.train(tiny_config(folder / "corpus.txt", epochs=3), out=folder / "run", progress=False,
                       echo=lambda s: None)
    return run


_COURSE_SUMMARY: list[str] = []


@pytest.fixture(scope="session")
def course_summary() -> list[str]:
    """Lines a test adds here are printed at the end of the run (what each course notebook's checks said), so
    they show in CI's log without -s."""
    return _COURSE_SUMMARY


def pytest_terminal_summary(terminalreporter):
    if _COURSE_SUMMARY:
        terminalreporter.section("course notebooks")
        for line in _COURSE_SUMMARY:
            terminalreporter.write_line(line)
