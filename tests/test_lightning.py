"""tinylm inside PyTorch Lightning: LitCharRNN and any tinylm model trained a few steps by pl.Trainer on
tinylm's data, saved as a run directory that tinylm.load, `tinylm sample` and `tinylm eval` read; the
exercise's example script; the one-line error when the extra is missing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import tinylm
from tinylm.data import IGNORE

pytest.importorskip("lightning")
from tinylm.training.lightning import LitCharRNN, LitLanguageModel, TextDataModule, fit  # noqa: E402

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    path = tmp_path_factory.mktemp("lightning") / "small.txt"
    path.write_text((data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:12_000],
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def exercise_run(corpus, tmp_path_factory):
    data = TextDataModule.exercise(corpus)
    model = LitCharRNN(data.vocab_size)
    out = tmp_path_factory.mktemp("lit") / "run"
    run = fit(model, data, out, max_epochs=2, progress=False)
    return run, out, data


def test_lit_char_rnn_is_the_exercise(exercise_run):
    run, out, data = exercise_run
    config = json.loads((out / "config.json").read_text())
    # maxlen 40 / step 3 windows, many-to-one; LitCharRNN's defaults are the exercise's (tinylm's preset)
    assert (config["data"]["target"], config["data"]["block_size"], config["data"]["stride"]) == ("last", 40, 3)
    model = config["model"]
    assert (model["cell"], model["layers"], model["embed"], model["hidden"], model["dropout"], model["head"]) == (
        "lstm", 1, 64, 128, 0.2, "mlp")
    assert config["train"]["lr"] == 5e-3 and config["train"]["optimizer"] == "adam"
    assert config["train"]["patience"] == 5 and config["train"]["batch_size"] == 128
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (128, 40) and (y[:, :-1] == IGNORE).all() and (y[:, -1] == x[:, -1]).sum() < 128
    # only the character after the window is a target: y's last column is the text's next character
    text_ids = data.tokenizer.encode(data.train_text)
    window = x[0].tolist()
    start = next(i for i in range(len(text_ids)) if text_ids[i:i + 40] == window)
    assert y[0, -1].item() == text_ids[start + 40]


def test_lightning_run_loads_samples_and_evaluates(exercise_run):
    run, out, _ = exercise_run
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in metrics] == [1, 2]
    assert metrics[1]["val_loss"] < metrics[0]["val_loss"] < 4.0  # learning, from ln(vocab) ~ 4
    best = min(metrics, key=lambda r: r["val_loss"])
    # The saved weights are the best epoch's, and Lightning's validation loss is tinylm's evaluation of them.
    assert run.evaluate().loss == pytest.approx(best["val_loss"], abs=1e-5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_epoch"] == best["epoch"] and summary["trainer"].startswith("lightning")
    assert (out / "lightning" / "best.ckpt").is_file() and (out / "loss.png").is_file()
    text = run.generate("ROMEO:", max_new_tokens=40, temperature=0.8, seed=1)
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 40

    sample = subprocess.run([sys.executable, "-m", "tinylm", "sample", str(out), "--prompt", "ROMEO:",
                             "--max-new-tokens", "40", "--seed", "1", "--temperature", "0.8"],
                            capture_output=True, text=True)
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.strip() == text.strip()  # the same model and seed through the CLI
    evaluated = subprocess.run([sys.executable, "-m", "tinylm", "eval", str(out), "--json"], capture_output=True,
                               text=True)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["loss"] == pytest.approx(best["val_loss"], abs=1e-5)


def test_any_tinylm_model_in_line_mode(tmp_path):
    titles = [f"{w} {v} the {t} in {p}" for w in ("Residents", "Teachers", "Farmers") for v in ("fund", "delay")
              for t in ("bridge", "library", "park") for p in ("Ashby", "Riverton", "Oakridge", "Milltown")]
    corpus = tmp_path / "titles.txt"
    corpus.write_text("\n".join(titles * 3) + "\n", encoding="utf-8")
    data = TextDataModule(tinylm.DataConfig(source=str(corpus), lines=True, block_size=48), batch_size=16)
    x, y = next(iter(data.train_dataloader()))
    padded = x == data.tokenizer.pad_id
    assert padded.any() and (y[padded] == IGNORE).all()  # padding never counts in the loss
    model = LitLanguageModel(tinylm.model_config("gru", vocab_size=data.vocab_size, embed=16, hidden=64, layers=1),
                             lr=1e-2)
    run = fit(model, data, tmp_path / "run", max_epochs=3, progress=False)
    assert run.config.data.lines and run.config.model.cell == "gru"
    title = run.generate("", max_new_tokens=80, temperature=0.5, seed=0)
    assert "\n" not in title and len(title) < 80  # one line, ended by <eos>
    assert len(run.metrics) == 3 and run.metrics[-1]["val_loss"] < run.metrics[0]["val_loss"]


def test_a_gpt_must_match_the_windows(corpus, tmp_path):
    data = TextDataModule(tinylm.DataConfig(source=str(corpus), block_size=32), batch_size=16)
    gpt = tinylm.model_config("gpt", vocab_size=data.vocab_size, layers=1, heads=2, embed=32, block_size=64)
    with pytest.raises(tinylm.TinyLMError, match="block_size=32"):
        fit(LitLanguageModel(gpt), data, tmp_path / "bad", max_steps=2, progress=False)
    assert not (tmp_path / "bad").exists()
    gpt.block_size = 32
    run = fit(LitLanguageModel(gpt), data, tmp_path / "gpt", max_steps=6, progress=False)
    assert run.config.model.block_size == 32 and run.metrics[0].get("partial") is True
    assert json.loads((tmp_path / "gpt" / "summary.json").read_text())["stop_reason"] == "max_steps"


def test_the_exercise_example_script(corpus, tmp_path):
    out = tmp_path / "lit"
    command = [sys.executable, str(REPO / "examples" / "lightning_char_rnn.py"), "--data", str(corpus),
               "--max-steps", "12", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"run directory: {out}" in result.stdout
    run = tinylm.load(out)
    assert run.config.data.target == "last" and run.config.model.head == "mlp"
    assert json.loads((out / "summary.json").read_text())["steps"] == 12
    # An --out holding a run is refused before training (one line, exit 2), unless --overwrite.
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--overwrite" in again.stderr and again.stderr.count("\n") == 1


def test_without_the_extra_one_line_names_the_install(tmp_path):
    code = ("import sys; sys.modules['lightning'] = None\n"  # as if lightning were not installed
            "import tinylm\nassert 'lightning' not in sys.modules or sys.modules['lightning'] is None\n"
            "try:\n    import tinylm.training.lightning\nexcept tinylm.TinyLMError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tinylm.training.lightning needs PyTorch Lightning: pip install 'tinylm[lightning]'"
    plain = subprocess.run([sys.executable, "-c", "import sys, tinylm; print('lightning' in sys.modules)"],
                           capture_output=True, text=True)
    assert plain.stdout.strip() == "False"  # the base install never imports it
