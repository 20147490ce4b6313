"""`tinylm finetune`: a tiny random GPT-2 built here (2 layers, width 32, context 32, a byte-level BPE
tokenizer trained on the test text) is fine-tuned for a few dozen steps with the transformers Trainer; the
result must be a run like any other. No network: the base is a local folder, W&B runs offline."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tinylm
from tinylm.models import build_model
from tinylm.training.finetune import FinetuneConfig, _blocks, _line_examples

pytest.importorskip("transformers")

FAST = {"lr": 3e-3, "batch_size": 16, "block_size": 32, "sample_tokens": 20}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    path = tmp_path_factory.mktemp("finetune") / "corpus.txt"
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:20_000]
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory, corpus):
    return make_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"), corpus.read_text(encoding="utf-8"))


def make_tiny_gpt2(folder, text: str):
    """A random GPT-2 and its tokenizer saved with save_pretrained, like a downloaded Hub model."""
    import tokenizers as hf
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    backend = hf.Tokenizer(hf.models.BPE())
    backend.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                     initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator([text], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|endoftext|>",
                                        eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=eos, eos_token_id=eos)
    model = GPT2LMHeadModel(config)
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
    for name in ["config.json", "generation_config.json", "tinylm_config.json", "tokenizer.json",
                 "tokenizer_config.json", "model.safetensors", "metrics.jsonl", "samples.jsonl", "loss.png",
                 "summary.json"]:
        assert (out / name).is_file(), name
    assert not (out / "trainer").exists()  # the Trainer's checkpoints are gone
    assert json.loads((out / "config.json").read_text())["model_type"] == "gpt2"  # transformers' config
    assert json.loads((out / "tinylm_config.json").read_text())["model"]["family"] == "hf"
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
    # The per-epoch evaluation is tinylm's: the saved weights are the best epoch's, and the epoch line and
    # the summary print the same perplexity.
    assert summary["val_loss_after"] == pytest.approx(summary["best_val_loss"], abs=1e-6)
    best = min(records, key=lambda r: r["val_loss"])
    assert f"ppl {summary['perplexity_after']:.2f}" in next(x for x in lines if x.startswith(f"epoch {best['epoch']}/"))
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
    config = json.loads((out / "tinylm_config.json").read_text())
    assert config["data"]["lines"] and config["model"]["family"] == "hf"
    summary = json.loads((out / "summary.json").read_text())
    # What tinylm's W&B logger logged, read back by wandb's own reader, and the summary's perplexities.
    [folder] = (tmp_path / "wandb" / "wandb").glob("offline-run-*")
    inspected = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--summary", "--json",
                                str(folder)], capture_output=True, text=True, timeout=120, check=True)
    logged = json.loads(inspected.stdout)["summary"]
    assert logged["val/loss"] == pytest.approx(summary["best_val_loss"], abs=1e-5)
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

    pytest.importorskip("tinylm.publishing.export")
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


def test_the_run_is_a_transformers_model_pipeline_and_auto_classes_load(finetuned):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    run, out, _ = finetuned
    model = AutoModelForCausalLM.from_pretrained(out)
    # Every weight of the file is used and none is missing (the tied lm_head is the embedding).
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    ids = torch.tensor([run.tokenizer.encode("ROMEO: and")])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, run.module(ids)[0], atol=1e-5)
    generator = pipeline("text-generation", model=str(out))
    text = generator("ROMEO:", max_new_tokens=12, do_sample=False)[0]["generated_text"]
    assert text == run.generate("ROMEO:", max_new_tokens=12, greedy=True, stop_at_eos=False)
    assert AutoTokenizer.from_pretrained(out)("ROMEO:")["input_ids"] == run.tokenizer.encode("ROMEO:")


def test_a_run_of_the_earlier_layout_still_loads(finetuned, tmp_path):
    """Before: tinylm's config as config.json, weights named by the wrapper (`model.` + transformers' name)."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM

    run, out, _ = finetuned
    old = tmp_path / "old"
    old.mkdir()
    for name in ["tokenizer.json", "tokenizer_config.json", "metrics.jsonl", "summary.json"]:
        (old / name).write_bytes((out / name).read_bytes())
    (old / "config.json").write_bytes((out / "tinylm_config.json").read_bytes())
    wrapper = torch.nn.Module()  # how the file was written: save_model of the HFCausalLM wrapper
    wrapper.model = AutoModelForCausalLM.from_pretrained(out)
    save_model(wrapper, str(old / "model.safetensors"), metadata={"format": "pt"})
    loaded = tinylm.load(old)
    assert loaded.evaluate().loss == pytest.approx(run.evaluate().loss, rel=1e-6)


def test_finetune_logs_the_keys_tinylm_train_logs(tiny_base, corpus, tmp_path):
    """TensorBoard tags and CSV columns of a fine-tune are those of a `tinylm train` run, each point once."""
    from conftest import tiny_config
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def logged(run_dir):
        events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
        events.Reload()
        tags = events.Tags()
        for tag in tags["scalars"]:
            steps = [e.step for e in events.Scalars(tag)]
            assert len(steps) == len(set(steps)), f"{tag} logged twice at a step in {run_dir.name}"
        return sorted(tags["scalars"]), sorted(tags["tensors"]), events

    trained = tmp_path / "train"
    tinylm.train(tiny_config(corpus, epochs=2, logger="tensorboard"), out=trained, progress=False,
                 echo=lambda s: None)
    tuned = tmp_path / "finetune"
    tinylm.finetune(tiny_base, corpus, out=tuned, config=FinetuneConfig(epochs=2, logger="tensorboard", **FAST),
                    progress=False, echo=lambda s: None)
    train_scalars, train_tensors, _ = logged(trained)
    tune_scalars, tune_tensors, events = logged(tuned)
    assert tune_scalars == train_scalars and tune_tensors == train_tensors
    assert {"train/loss", "val/loss", "val/perplexity"} <= set(tune_scalars)
    assert "samples/text_summary" in tune_tensors
    # The HParams tab's entry: the settings and the best validation perplexity, in the same run folder.
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    start = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    settings = start.session_start_info.hparams
    assert settings["train.lr"].number_value == FAST["lr"] and settings["model.family"].string_value == "hf"
    summary = json.loads((tuned / "summary.json").read_text())
    [best] = events.Scalars("hparams/best_val_perplexity")
    assert best.value == pytest.approx(math.exp(summary["best_val_loss"]), rel=1e-5)
    records = read_jsonl(tuned / "metrics.jsonl")
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("val/perplexity")] == \
        [(r["step"], round(r["val_perplexity"], 4)) for r in records]
    # both report to tinylm.run.session.RunSession: the same records and samples, field for field
    trained_records = read_jsonl(trained / "metrics.jsonl")
    assert set(records[0]) == set(trained_records[0]) - {"wall_seconds"}
    samples = [read_jsonl(run / "samples.jsonl") for run in (tuned, trained)]
    assert [set(r) for r in samples[0]] == [set(r) for r in samples[1]]


# -- LoRA (peft) ------------------------------------------------------------------------------------------
LORA = {**FAST, "lr": 2e-2, "lora": True, "lora_rank": 4, "lora_alpha": 8}


@pytest.fixture(scope="module")
def lora_finetuned(tiny_base, corpus, tmp_path_factory):
    pytest.importorskip("peft")
    out = tmp_path_factory.mktemp("lora") / "run"
    lines: list[str] = []
    run = tinylm.finetune(tiny_base, corpus, out=out, config=FinetuneConfig(epochs=2, **LORA), progress=False,
                          echo=lines.append)
    return run, out, lines


def test_lora_trains_only_the_adapters_and_keeps_adapter_and_merged_model(lora_finetuned, tiny_base):
    from transformers import AutoModelForCausalLM

    run, out, lines = lora_finetuned
    assert sorted(p.name for p in (out / "adapter").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    summary = json.loads((out / "summary.json").read_text())
    # GPT-2's default target: c_attn, a (32 -> 96) Conv1D in each of 2 layers: rank 4 x (32 + 96) x 2 parameters
    assert summary["lora"] == {"rank": 4, "alpha": 8, "dropout": 0.05, "targets": ["c_attn"], "layers": 2,
                               "adapter": "adapter"}
    assert summary["trainable_parameters"] == 4 * (32 + 96) * 2
    base = AutoModelForCausalLM.from_pretrained(tiny_base).state_dict()
    assert summary["parameters"] == sum(t.numel() for name, t in base.items() if name != "lm_head.weight")
    assert any(line.startswith("  lora ") and "1,024 trainable parameters" in line for line in lines)
    assert summary["val_loss_after"] < summary["val_loss_before"] - 0.05
    # The merged model is the base but for the adapted layers' weights (their biases are not adapted).
    merged = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert merged.keys() == base.keys()
    changed = {name for name in base if not torch.equal(base[name], merged[name])}
    assert changed == {f"transformer.h.{i}.attn.c_attn.weight" for i in range(2)}
    # The run returned is a plain transformers model again, every weight trainable as in a loaded run.
    assert run.num_parameters() == tinylm.load(out).num_parameters() == summary["parameters"]
    assert not any("lora" in name for name, _ in run.module.named_modules())


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft asks transformers 5.24
def test_the_lora_adapter_loads_with_peft_and_gives_the_merged_logits(lora_finetuned, tiny_base):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run, out, _ = lora_finetuned
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), out / "adapter").eval()
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.tensor([run.tokenizer.encode("ROMEO: and so to bed")])
    with torch.no_grad():
        want = merged(ids).logits
        assert torch.allclose(adapted(ids).logits, want, atol=1e-5)
        assert torch.allclose(run.module(ids)[0], want, atol=1e-5)
        assert not torch.allclose(AutoModelForCausalLM.from_pretrained(tiny_base)(ids).logits, want, atol=1e-3)


def test_a_lora_run_samples_with_tinylm_and_the_transformers_pipeline(lora_finetuned):
    from transformers import pipeline

    run, out, _ = lora_finetuned
    generator = pipeline("text-generation", model=str(out))
    text = generator("ROMEO:", max_new_tokens=12, do_sample=False)[0]["generated_text"]
    assert text == tinylm.load(out).generate("ROMEO:", max_new_tokens=12, greedy=True, stop_at_eos=False)
    assert len(text) > len("ROMEO:")


def test_the_model_card_of_a_lora_run_names_lora_rank_and_base(lora_finetuned, tiny_base):
    pytest.importorskip("huggingface_hub")
    from tinylm.publishing.card import build_card, card_facts

    card = build_card(card_facts(lora_finetuned[1], "alice/tiny-lora"))
    metadata, body = card.split("\n---\n", 1)
    assert "- lora" in metadata and "- peft" in metadata
    assert f"fine-tuned from {tiny_base.name} with tinylm on corpus.txt by LoRA (rank 4, alpha 8 on c_attn: " \
           "1,024 parameters trained, then merged into the weights)" in body
    assert "| LoRA | rank 4, alpha 8 on c_attn, dropout 0.05: 1,024 parameters trained" in body


def test_a_pushed_lora_run_carries_its_adapter(lora_finetuned, tiny_base, tmp_path):
    """The repo holds the merged model and adapter/, which peft loads onto the base from the repo's folder."""
    pytest.importorskip("huggingface_hub")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    folder = Path(tinylm.push(lora_finetuned[1], "alice/tiny-lora", dry_run=tmp_path / "repo"))
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= \
        {str(p.relative_to(folder)) for p in folder.rglob("*")}
    assert "adapter/adapter_model.safetensors" in (folder / "README.md").read_text(encoding="utf-8")
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), folder / "adapter")


def test_lora_mistakes_are_one_line_errors_and_the_cli_exits_2(tiny_base, corpus, tmp_path, capsys):
    pytest.importorskip("peft")
    from tinylm.cli import main

    def error(**config) -> str:
        with pytest.raises(tinylm.TinyLMError) as e:
            tinylm.finetune(tiny_base, corpus, out=tmp_path / "x", config=FinetuneConfig(**{**LORA, **config}),
                            progress=False, echo=lambda s: None)
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "--lora-rank must be at least 1" in error(lora_rank=0)
    assert "--lora-alpha must be positive" in error(lora_alpha=0)
    assert "--lora-dropout must be in [0, 1)" in error(lora_dropout=1.0)
    missing = error(lora_targets=["q_proj"])
    assert "no such layer" in missing and "c_attn, c_fc, c_proj, lm_head" in missing
    assert "takes no LoRA adapter" in error(lora_targets=["ln_1"])
    assert "shared with another layer" in error(lora_targets=["c_attn", "lm_head"])
    assert "add --lora" in error(lora=False, lora_rank=16)
    assert not (tmp_path / "x").exists()  # refused before the run directory is made
    command = ["finetune", "--base", str(tiny_base), "--data", str(corpus), "--out", str(tmp_path / "x"), "--lora",
               "--quiet"]
    capsys.readouterr()
    assert main([*command, "--lora-targets", "c_attn,qkv"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --lora-targets qkv: ") and err.count("\n") == 1
    assert main([*command, "--lora-rank", "0"]) == 2
    assert capsys.readouterr().err == "error: --lora-rank must be at least 1, got 0\n"


def test_without_peft_the_cli_says_which_extra_to_install(tiny_base, corpus, tmp_path, monkeypatch, capsys):
    from tinylm.cli import main

    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` raises ModuleNotFoundError
    assert main(["finetune", "--base", str(tiny_base), "--data", str(corpus), "--lora",
                 "--out", str(tmp_path / "x")]) == 2
    assert "pip install 'tinylm[lora]'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_lora_settings_round_trip_through_json():
    import dataclasses

    config = FinetuneConfig(lora=True, lora_rank=16, lora_alpha=32, lora_targets=["c_attn", "c_proj"],
                            lora_dropout=0.0)
    assert FinetuneConfig(**json.loads(json.dumps(dataclasses.asdict(config)))) == config
    older = {k: v for k, v in dataclasses.asdict(FinetuneConfig()).items() if not k.startswith("lora")}
    assert FinetuneConfig(**older) == FinetuneConfig()  # settings saved before LoRA: its defaults, off
    assert FinetuneConfig(lora=True, lora_targets=[" c_attn", "c_attn"]).lora_targets == ["c_attn"]


def test_a_lora_run_can_be_overwritten(lora_finetuned, tiny_base, corpus, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(lora_finetuned[1], out)
    tinylm.finetune(tiny_base, corpus, out=out, config=FinetuneConfig(epochs=1, **FAST), overwrite=True,
                    progress=False, echo=lambda s: None)
    assert not (out / "adapter").exists()
