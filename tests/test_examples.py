"""The examples/ scripts, run as a learner runs them (subprocesses) in their QUICK mode, with checks on what
they wrote: the memorised sentence comes back, losses fall, titles stop at <eos>, the model card exists...

The selected examples start together at the beginning, two at a time (each uses one CPU thread), so the
file takes about as long as its longest examples rather than their sum.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import tinylm

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
TIMEOUT = 600
LONGEST_FIRST = ["04", "02", "03", "05", "01"]  # start order: the short examples fill the gaps at the end


@dataclass
class Result:
    out: Path
    stdout: str
    stderr: str


def _script(number: str) -> Path:
    (path,) = EXAMPLES.glob(f"{number}_*")
    return path


def _run(number: str, root: Path, data_dir: Path) -> Result:
    out = root / number
    out.mkdir(parents=True)
    env = {
        **os.environ,
        "TINYLM_QUICK": "1",
        "OUT": str(out),
        "TINYLM_DATA_DIR": str(data_dir),
        "TINYLM_CACHE_DIR": str(root / "cache"),
        "TINYLM_OFFLINE": "1",
        # No network: W&B logs offline into a temporary folder, the Hub is never reached.
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(out),
        "WANDB_SILENT": "true",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(root / "hf"),
        # The models are tiny: one thread each is faster than two fighting over a shared CPU.
        "OMP_NUM_THREADS": "1",
        # The scripts call `tinylm` and `python`: this interpreter's environment.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("HF_REPO", None)  # example 2 would really publish
    if number == "04":
        # A stand-in for "another public-domain book": any English text other than Shakespeare.
        book = root / "book.txt"
        book.write_text((data_dir / "wikitext-2" / "test.txt").read_text(encoding="utf-8")[:10_000],
                        encoding="utf-8")
        env["BOOK"] = str(book)
    script = _script(number)
    command = [sys.executable, str(script)] if script.suffix == ".py" else ["bash", str(script)]
    result = subprocess.run(command, check=False, cwd=root, env=env, capture_output=True, text=True,
                            timeout=TIMEOUT)
    if result.returncode != 0:
        raise AssertionError(f"{script.name} exited with {result.returncode}\n"
                             f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}")
    return Result(out, result.stdout, result.stderr)


@pytest.fixture(scope="session")
def examples(request, tmp_path_factory, data_dir) -> Iterator[dict[str, Future]]:
    """Start the examples whose tests are selected (test_NN_... waits for example NN), two at a time."""
    numbers = {item.name[len("test_"):][:2] for item in request.session.items
               if item.path == Path(__file__) and "examples" in getattr(item, "fixturenames", ())}
    root = tmp_path_factory.mktemp("examples")
    pool = ThreadPoolExecutor(max_workers=2)
    futures = {number: pool.submit(_run, number, root, data_dir)
               for number in sorted(numbers, key=LONGEST_FIRST.index)}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _config(run_dir: Path) -> dict:
    return json.loads((run_dir / "config.json").read_text())


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_01_the_memorised_sentence_comes_back(examples):
    result = examples["01"].result()
    sentence = runpy.run_path(str(_script("01")))["SENTENCE"]  # defines, does not run (no __main__)
    assert f"greedy: {sentence!r}" in result.stdout
    # Checked again here, independently of the script's own check: greedy decoding from an empty prompt
    # (the start of a line) writes the sentence and stops at <eos>.
    run = tinylm.load(result.out / "run")
    assert run.generate("", greedy=True, max_new_tokens=100) == sentence
    losses = [r["val_loss"] for r in _metrics(result.out / "run")]
    assert losses[-1] < 0.5 < losses[0] and losses[-1] == min(losses)
    assert _is_png(result.out / "run" / "loss.png")


def test_02_final_project_gpt_bpe_wandb_and_model_card(examples):
    result = examples["02"].result()
    run_dir = result.out / "run"
    config = _config(run_dir)
    assert config["model"]["family"] == "gpt" and config["tokenizer"]["kind"] == "bpe"
    assert config["train"]["logger"] == "wandb"
    metrics = _metrics(run_dir)
    assert [r["epoch"] for r in metrics] == [1, 2]  # validation loss after every epoch
    assert metrics[1]["val_loss"] < metrics[0]["val_loss"]
    # W&B ran offline and kept its run for `wandb sync`.
    assert list((result.out / "wandb").glob("offline-run-*")), "no offline W&B run"
    # The dry run wrote the folder `tinylm push` would upload: the model card, the curves, the run.
    card = (result.out / "hub" / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "license: mit" in card and "# shakespeare-gpt" in card
    assert "Validation after each epoch" in card and "](loss.png)" in card
    assert _is_png(result.out / "hub" / "loss.png")
    assert (result.out / "sample.txt").read_text(encoding="utf-8").startswith("ROMEO:")


def test_02_full_size_final_project_stays_under_one_million_parameters():
    """The full run is too long for a test; its model is built here (untrained) and counted."""
    script = _script("02").read_text()
    vocab = int(re.search(r"^\s*SIZE=\(--vocab-size (\d+) --epochs 5\)", script, re.MULTILINE).group(1))
    preset = tinylm.PRESETS["gpt-cpu"]["model"]
    model = tinylm.model_config("gpt", **{k: v for k, v in preset.items() if k != "name"}, vocab_size=vocab,
                                block_size=tinylm.PRESETS["gpt-cpu"]["data"]["block_size"])
    from tinylm.models import build_model

    assert 500_000 < build_model(model).num_parameters() < 1_000_000


def test_03_news_titles_are_single_lines_ended_by_eos(examples):
    result = examples["03"].result()
    corpus = (result.out / "titles.txt").read_text(encoding="utf-8").splitlines()
    assert len(corpus) >= 1000 and len(set(corpus)) > 500
    assert _config(result.out / "run")["data"]["lines"] is True
    printed = (result.out / "samples.txt").read_text(encoding="utf-8")
    samples = [s.strip("\n") for s in printed.split("-" * 40)]  # `tinylm sample` puts dashes between samples
    assert len(samples) == 5
    corpus_words = {w for title in corpus for w in title.split()}
    for sample in samples:
        # One line each, shorter than --max-new-tokens 150: generation stopped at <eos>, not at the limit.
        assert sample and "\n" not in sample and len(sample) < 150, sample
    words = [w for s in samples for w in s.split()]
    assert sum(w in corpus_words for w in words) / len(words) > 0.8  # trained: mostly the corpus' words
    report = json.loads((result.out / "temperature" / "temperature.json").read_text())
    assert report["temperatures"] == [0.3, 0.7, 1.0, 1.5, 2.0]
    real = {s["label"]: s["real_words"] for s in report["stats"]}
    assert real["0.3"] > real["2"]  # hotter samples invent words
    for sample in report["samples"]:
        if sample["temperature"] <= 1.0:
            assert "\n" not in sample["text"]
    assert _is_png(result.out / "temperature" / "temperature.png")


def test_04_shakespeare_exercise_then_another_book(examples):
    result = examples["04"].result()
    prompt = re.search(r'^PROMPT="(.*)"$', _script("04").read_text(), re.MULTILINE).group(1)
    assert len(prompt) == 40  # the exercise's maxlen
    for name in ("shakespeare", "book"):
        run_dir = result.out / name
        config = _config(run_dir)
        # The exercise: maxlen-40 / step-3 windows, many-to-one, early stopping with patience 5.
        assert config["data"]["target"] == "last"
        assert (config["data"]["block_size"], config["data"]["stride"]) == (40, 3)
        assert config["train"]["patience"] == 5 and config["model"]["head"] == "mlp"
        losses = [r["val_loss"] for r in _metrics(run_dir)]
        assert len(losses) == 2 and losses[1] < losses[0]
        assert _is_png(run_dir / "softmax.png") and _is_png(run_dir / "loss.png")
        report = json.loads((result.out / f"{name}-temperature" / "temperature.json").read_text())
        assert report["temperatures"] == [0.2, 0.5, 1.0, 1.2] and report["prompts"] == [prompt]
        assert all(s["text"].startswith(prompt) for s in report["samples"])
    assert _config(result.out / "book")["data"]["source"].endswith("book.txt")


def test_05_word_level_models_write_only_words_of_the_training_text(examples):
    result = examples["05"].result()
    text = (result.out / "shakespeare-small.txt").read_text(encoding="utf-8")
    training_words = set(re.findall(r"\w+(?:'\w+)*", text))
    for name in ("lstm", "markov"):
        config = _config(result.out / name)
        assert config["tokenizer"]["kind"] == "word"
        sample = (result.out / f"{name}.txt").read_text(encoding="utf-8")
        assert sample.startswith("MENENIUS:")
        written = re.findall(r"\w+(?:'\w+)*", sample[len("MENENIUS:"):].replace("<unk>", ""))
        assert len(written) >= 10
        # A word-level model picks whole words from its vocabulary: it cannot misspell or invent one.
        assert set(written) <= training_words, set(written) - training_words
    losses = [r["val_loss"] for r in _metrics(result.out / "lstm")]
    assert losses[-1] < losses[0]
    assert _config(result.out / "markov")["model"]["order"] == 3
