"""Export of GPT runs to transformers (tinylm/publishing/export.py, `tinylm export`)."""

from __future__ import annotations

import json

import pytest
import torch

import tinylm
from tinylm.cli import main
from tinylm.errors import TinyLMError
from tinylm.generation.sampling import SamplingConfig, generate_ids
from tinylm.models import model_config

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory, shakespeare_text):
    """A tiny GPT trained for a few steps (random-ish weights, but through the real training path)."""
    folder = tmp_path_factory.mktemp("gpt")
    (folder / "corpus.txt").write_text(shakespeare_text[:10_000], encoding="utf-8")
    config = tinylm.RunConfig(
        data=tinylm.DataConfig(source=str(folder / "corpus.txt"), block_size=24),
        model=model_config("gpt", layers=2, heads=4, embed=32, dropout=0.1),
        train=tinylm.TrainConfig(max_steps=3, epochs=1, batch_size=8, warmup_steps=1, sample_tokens=8),
    )
    tinylm.train(config, out=folder / "run", progress=False, echo=lambda s: None)
    return folder / "run"


@pytest.fixture(scope="module")
def exported(gpt_run, tmp_path_factory):
    return tinylm.export_run(gpt_run, tmp_path_factory.mktemp("export") / "hf", format="transformers")


def test_export_writes_a_gpt2_folder(exported, gpt_run):
    from safetensors import safe_open

    assert {p.name for p in exported.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json",
                                                    "tokenizer_config.json", "generation_config.json"}
    config = json.loads((exported / "config.json").read_text())
    run = tinylm.load(gpt_run)
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"]
    assert (config["n_layer"], config["n_head"], config["n_embd"], config["n_positions"]) == (2, 4, 32, 24)
    assert config["vocab_size"] == run.tokenizer.vocab_size and config["eos_token_id"] == run.tokenizer.eos_id
    with safe_open(str(exported / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}
        assert "lm_head.weight" not in set(f.keys())  # safe_open has no __contains__
        assert f.get_tensor("transformer.h.0.attn.c_attn.weight").shape == (32, 96)  # Conv1D: (in, out)


def test_gpt2_weights_convert_back_exactly(exported, gpt_run):
    """The inverse of the export (what tinylm.load does with a pushed GPT repo): the same tensors, tied head."""
    from safetensors.torch import load_file

    from tinylm.models import build_model
    from tinylm.publishing.export import gpt2_state_dict, gpt_from_gpt2_file, state_dict_from_gpt2

    run = tinylm.load(gpt_run)
    original = run.module.state_dict()
    for weights in (gpt2_state_dict(run.module), load_file(str(exported / "model.safetensors"))):
        back = state_dict_from_gpt2(weights, run.module)
        assert back.keys() == original.keys()
        for name, tensor in original.items():
            assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name
    rebuilt = gpt_from_gpt2_file(exported / "model.safetensors", build_model(run.config.model))
    assert rebuilt.lm_head.weight is rebuilt.transformer.wte.weight  # still tied
    assert all(torch.equal(rebuilt.state_dict()[name], tensor) for name, tensor in original.items())

    weights = gpt2_state_dict(run.module)
    del weights["transformer.h.1.mlp.c_fc.bias"]
    with pytest.raises(TinyLMError, match="missing transformer.h.1.mlp.c_fc.bias"):
        state_dict_from_gpt2(weights, run.module)
    weights = gpt2_state_dict(run.module)
    weights["transformer.h.0.attn.c_attn.weight"] = weights["transformer.h.0.attn.c_attn.weight"].t()
    with pytest.raises(TinyLMError, match=r"c_attn.weight is \(96, 32\), the model needs \(32, 96\)"):
        state_dict_from_gpt2(weights, run.module)


def test_transformers_logits_and_greedy_text_equal_tinylm(exported, gpt_run):
    run = tinylm.load(gpt_run)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(exported)).eval()
    assert type(hf).__name__ == "GPT2LMHeadModel"
    ids = torch.tensor([run.tokenizer.encode("First Citizen:\nBefore we proceed")[:24]])
    with torch.no_grad():
        ours, _ = run.module(ids)
        theirs = hf(ids).logits
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-4)

    prompt = ids[0, :4].tolist()
    tokens = list(generate_ids(run.module, prompt, SamplingConfig(max_new_tokens=12, greedy=True, stop_at_eos=False)))
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=None,
                          min_new_tokens=12)
    assert out[0, 4:].tolist() == tokens


def test_pipeline_generates_and_tokenizer_matches(exported, gpt_run, caplog):
    from transformers.utils import logging as hf_logging

    run = tinylm.load(gpt_run)
    generator = transformers.pipeline("text-generation", model=str(exported), device="cpu")
    hf_logging.enable_propagation()  # transformers' warnings reach caplog
    try:
        with caplog.at_level("WARNING"):
            text = generator("First", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    finally:
        hf_logging.disable_propagation()
    assert not [r.getMessage() for r in caplog.records if "max_length" in r.getMessage()]
    assert text.startswith("First") and len(text) > len("First")
    auto = transformers.AutoTokenizer.from_pretrained(str(exported))
    assert auto("Citizen", add_special_tokens=False).input_ids == run.tokenizer.encode("Citizen")
    # the default length stops at the learned positions instead of indexing past them
    assert generator("First", do_sample=False)[0]["generated_text"].startswith("First")


def test_export_refuses_non_gpt_runs_and_bad_targets(tmp_path, gpt_run, shakespeare_text):
    (tmp_path / "corpus.txt").write_text(shakespeare_text[:5_000], encoding="utf-8")
    config = tinylm.RunConfig(
        data=tinylm.DataConfig(source=str(tmp_path / "corpus.txt"), block_size=16),
        model=model_config("lstm", embed=8, hidden=16, layers=1),
        train=tinylm.TrainConfig(max_steps=1, epochs=1, batch_size=8, sample_tokens=4),
    )
    tinylm.train(config, out=tmp_path / "lstm", progress=False, echo=lambda s: None)
    with pytest.raises(TinyLMError, match="GPT runs only"):
        tinylm.export_run(tmp_path / "lstm", tmp_path / "out")
    with pytest.raises(TinyLMError, match="unknown export format"):
        tinylm.export_run(gpt_run, tmp_path / "out", format="tflite")
    with pytest.raises(TinyLMError, match="--outtype applies to --format gguf only"):
        tinylm.export_run(gpt_run, tmp_path / "out", format="transformers", outtype="q8_0")
    with pytest.raises(TinyLMError, match="not empty"):
        tinylm.export_run(gpt_run, tmp_path / "lstm")
    with pytest.raises(TinyLMError, match="which this command reads"):
        tinylm.export_run(gpt_run, gpt_run, overwrite=True)


def test_cli_export(gpt_run, tmp_path, capsys):
    assert main(["export", str(gpt_run), str(tmp_path / "hf"), "--format", "transformers"]) == 0
    assert "AutoModelForCausalLM" in capsys.readouterr().out
    assert main(["export", str(gpt_run), str(tmp_path / "hf")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["export", str(gpt_run), str(tmp_path / "hf"), "--overwrite"]) == 0
