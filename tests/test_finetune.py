"""`tinylm finetune`: a tiny random GPT-2 built here (2 layers, width 32, context 32, a byte-level BPE
tokenizer trained on the test text) is fine-tuned for a few dozen steps with the transformers Trainer; the
result must be a run like any other. No network: the base is a local folder, W&B runs offline."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

import tinylm
from tinylm.finetune import FinetuneConfig, _blocks, _line_examples
from tinylm.models import build_model

pytest.importorskip("transformers")

FAST = {"lr": 3e-3, "batch_size": 16, "block_size": 32, "sample_tokens": 20}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Models this small run faster on one thread, and a busy shared CPU slows many threads down badly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    path = tmp_path_factory.mktemp("finetune") / "corpus.txt"
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:20_000]
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory, corpus):
    """A random GPT-2 and its tokenizer saved with save_pretrained, like a downloaded Hub model."""
    import tokenizers as hf
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    backend = hf.Tokenizer(hf.models.BPE())
    backend.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                     initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator([corpus.read_text(encoding="utf-8")], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|endoftext|>",
                                        eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=eos, eos_token_id=eos)
    model = GPT2LMHeadModel(config)
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def finetuned(tiny_base, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("finetuned") / "run"
    lines: list[str] = []
    run = tinylm.finetune(tiny_base, corpus, out=out, config=FinetuneConfig(epochs=3, **FAST), progress=False,
                          echo=lines.append)
    return run, out, lines


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_finetuning_lowers_the_validation_loss_and_writes_a_run_directory(finetuned):
    _, out, lines = finetuned
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors",
                 "metrics.jsonl", "samples.jsonl", "loss.png", "summary.json"]:
        assert (out / name).is_file(), name
    assert not (out / "trainer").exists()  # the Trainer's checkpoints are gone
    records = read_jsonl(out / "metrics.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    assert [r["epoch"] for r in records] == [1, 2, 3]
    # The fields tinylm's own loop writes, which `tinylm compare` and the Hub model card read.
    keys = {"epoch", "step", "train_loss", "val_loss", "val_perplexity", "val_bits_per_char", "tokens_per_s",
            "epoch_seconds", "elapsed_seconds", "train_curve"}
    assert all(keys <= r.keys() for r in records)
    val = [r["val_loss"] for r in records]
    assert val[-1] < val[0] < summary["val_loss_before"]
    assert summary["perplexity_after"] < summary["perplexity_before"] / 3
    assert summary["perplexity_before"] == pytest.approx(math.exp(summary["val_loss_before"]))
    # The Trainer's per-epoch evaluation and tinylm's agree, and the saved weights are the best epoch's.
    assert summary["val_loss_after"] == pytest.approx(summary["best_val_loss"], abs=0.01)
    assert len(read_jsonl(out / "samples.jsonl")) == 3
    assert any(line.startswith("epoch 3/3: ") for line in lines)
    assert lines[-1].startswith("done: validation perplexity")


def test_the_run_reloads_evaluates_and_samples_like_any_run(finetuned):
    from transformers import AutoTokenizer

    returned, out, _ = finetuned
    run = tinylm.load(out)
    assert run.config.model.hf_config["model_type"] == "gpt2" and run.tokenizer.kind == "pretrained"
    summary = json.loads((out / "summary.json").read_text())
    assert run.evaluate().perplexity == pytest.approx(summary["perplexity_after"], rel=1e-5)
    # 60 new tokens run past the context of 32: the KV cache is rebuilt from the last half on the way.
    text = run.generate("ROMEO:", max_new_tokens=60, seed=3, stop_at_eos=False)
    assert len(run.tokenizer.encode(text)) > 60 and text.startswith("ROMEO:")
    assert text == returned.generate("ROMEO:", max_new_tokens=60, seed=3, stop_at_eos=False)
    hf_tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert hf_tokenizer("ROMEO: hi")["input_ids"] == run.tokenizer.encode("ROMEO: hi")


def test_kv_cache_and_context_slide_give_the_logits_of_one_call(finetuned):
    run = finetuned[0]
    module = build_model(run.config.model).eval()
    module.load_state_dict(run.module.state_dict())
    ids = torch.randint(0, run.tokenizer.vocab_size, (2, 50))
    whole, _ = module(ids)  # one call over 50 tokens: slides once the 32 positions are used
    logits, state = module(ids[:, :5])
    steps = [logits]
    for t in range(5, 50):  # as generation runs: one token per call, carrying the state
        logits, state = module(ids[:, t:t + 1], state)
        steps.append(logits)
    assert torch.allclose(whole, torch.cat(steps, dim=1), atol=1e-5)
    fresh, _ = module(ids[:, :32])
    assert torch.allclose(whole[:, :32], fresh, atol=1e-5)
    assert not torch.allclose(whole[:, 32:], module(ids[:, 32:])[0], atol=1e-3)  # history is kept


def test_blocks_make_every_token_but_the_first_a_target_once():
    blocks = _blocks(list(range(11)), 4)
    assert blocks == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9], [9, 10]]
    targets = [t for block in blocks for t in block[1:]]
    assert targets == list(range(1, 11))


def test_line_mode_frames_each_line_with_the_end_of_text_token(finetuned):
    tokenizer = finetuned[0].tokenizer
    eos = tokenizer.eos_id
    examples = _line_examples(tokenizer, "To be\n\n  \nor not to be, that is the question\n", 8)
    first = [eos, *tokenizer.encode("To be"), eos]
    assert examples[0] == first
    second = [eos, *tokenizer.encode("or not to be, that is the question"), eos]
    assert [t for e in examples[1:] for t in e[1:]] == second[1:] and all(len(e) <= 8 for e in examples)


def test_cli_line_mode_with_wandb_offline_then_sample(tiny_base, corpus, tmp_path, monkeypatch, capsys):
    from tinylm.cli import main

    for name in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    code = main(["finetune", "--base", str(tiny_base), "--data", str(corpus), "--lines", "--epochs", "1",
                 "--lr", "3e-3", "--batch-size", "16", "--block-size", "32", "--sample-tokens", "10",
                 "--logger", "wandb", "--quiet", "--out", str(out)])
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["lines"] and config["model"]["family"] == "hf"
    summary = json.loads((out / "summary.json").read_text())
    # What the Trainer's WandbCallback logged (report_to), and the perplexities added to the run's summary.
    [folder] = (tmp_path / "wandb" / "wandb").glob("offline-run-*")
    inspected = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--summary", "--json",
                                str(folder)], capture_output=True, text=True, timeout=120, check=True)
    logged = json.loads(inspected.stdout)["summary"]
    assert logged["eval/loss"] == pytest.approx(summary["best_val_loss"], abs=1e-5)
    assert logged["perplexity_after"] == pytest.approx(summary["perplexity_after"])
    capsys.readouterr()
    assert main(["sample", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "20", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO:")
    assert main(["finetune", "--base", str(tiny_base), "--data", str(corpus), "--out", str(out)]) == 2
    assert "already holds a run; pass --overwrite" in capsys.readouterr().err


def test_a_finetuned_run_is_a_base_too(finetuned, corpus, tmp_path):
    _, first, _ = finetuned
    run = tinylm.finetune(first, corpus, out=tmp_path / "again", config=FinetuneConfig(epochs=1, **FAST),
                          progress=False, echo=lambda s: None)
    summary = json.loads((run.run_dir / "summary.json").read_text())
    before = json.loads((first / "summary.json").read_text())["perplexity_after"]
    assert summary["perplexity_before"] == pytest.approx(before, rel=1e-5)


def test_a_gpt_run_is_exported_on_the_fly(corpus, tmp_path):
    from tinylm.models import MODEL_NAMES

    pytest.importorskip("tinylm.export")
    if "gpt" not in MODEL_NAMES:
        pytest.skip("no gpt model family in this tinylm")
    from conftest import tiny_config

    gpt = tinylm.train(tiny_config(corpus, model="gpt", epochs=1), out=tmp_path / "gpt", progress=False,
                       echo=lambda s: None)
    run = tinylm.finetune(gpt.run_dir, corpus, out=tmp_path / "ft", config=FinetuneConfig(epochs=1, **FAST),
                          progress=False, echo=lambda s: None)
    summary = json.loads((run.run_dir / "summary.json").read_text())
    # The export is exact: the base scores the validation text as the GPT run itself does.
    assert summary["val_loss_before"] == pytest.approx(gpt.evaluate().loss, abs=1e-4)
    assert tinylm.load(run.run_dir).generate("ROMEO:", max_new_tokens=40, seed=1).startswith("ROMEO:")


def test_mistakes_are_one_line_errors(tiny_base, corpus, trained_run, tmp_path):
    def error(base, **config) -> str:
        with pytest.raises(tinylm.TinyLMError) as e:
            tinylm.finetune(base, corpus, out=tmp_path / "x", config=FinetuneConfig(**config), progress=False,
                            echo=lambda s: None)
        assert "\n" not in str(e.value)
        return str(e.value)

    offline = error("tinylm-tests/no-such-model")
    assert "Hugging Face cache" in offline and "--base DIR" in offline
    assert "longer than the context" in error(tiny_base, block_size=64)
    assert "only GPT runs and fine-tuned runs" in error(trained_run.run_dir)
    assert "unknown logger" in error(tiny_base, logger="carrier-pigeon")
    assert "no such directory" in error("./missing/folder")
    assert not (tmp_path / "x").exists()  # nothing is written before the inputs are known to be good
