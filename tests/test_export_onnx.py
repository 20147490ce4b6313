"""`tinylm export RUN OUT --format onnx` (tinylm/publishing/onnx.py): the graph gives tinylm's logits, with and
without a cache, and ONNX Runtime and onnxruntime-genai generate tinylm's greedy ids."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tinylm
from tinylm.cli import main
from tinylm.errors import TinyLMError
from tinylm.generation.sampling import SamplingConfig, generate_ids
from tinylm.models import model_config

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from tinylm.publishing.export import EXPORT_FORMATS  # noqa: E402
from tinylm.publishing.onnx import OnnxGenerator, export_onnx, generate_onnx, past_names, present_names  # noqa: E402

BLOCK = 64
PROMPT = "First Citizen:\nBefore we proceed any further, hear me speak."


@pytest.fixture(scope="module", params=["char", "bpe"])
def gpt_run(request, tmp_path_factory, shakespeare_text, one_thread):
    """A tiny GPT trained for a few steps, with the char tokenizer and with a byte-level BPE one."""
    folder = tmp_path_factory.mktemp(f"gpt-{request.param}")
    (folder / "corpus.txt").write_text(shakespeare_text[:10_000], encoding="utf-8")
    config = tinylm.RunConfig(
        data=tinylm.DataConfig(source=str(folder / "corpus.txt"), block_size=BLOCK),
        tokenizer=tinylm.TokenizerConfig(kind=request.param, vocab_size=300 if request.param == "bpe" else None),
        model=model_config("gpt", layers=2, heads=4, embed=32, dropout=0.0),
        train=tinylm.TrainConfig(max_steps=4, epochs=1, batch_size=8, warmup_steps=1, sample_tokens=8),
    )
    tinylm.train(config, out=folder / "run", progress=False, echo=lambda s: None)
    return folder / "run"


@pytest.fixture(scope="module")
def exported(gpt_run, tmp_path_factory):
    return tinylm.export_run(gpt_run, tmp_path_factory.mktemp("export") / "onnx", format="onnx")


@pytest.fixture(scope="module")
def spread(gpt_run, tmp_path_factory):
    """The run with its matrices redrawn at std 0.3 (seeded), exported: a few training steps leave a model whose
    greedy text repeats one or two tokens, which a broken cache could still match; these weights give varied
    ids. Returns (the run, its export)."""
    run = tinylm.load(gpt_run)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in run.module.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    out = tmp_path_factory.mktemp("spread")
    export_onnx(run, out)
    return run, out


def tinylm_logits(run, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        logits, _ = run.module(torch.tensor([ids]))
    return logits[0].numpy()


def tinylm_greedy(run, prompt: list[int], n: int, stop_at_eos: bool = False) -> list[int]:
    config = SamplingConfig(max_new_tokens=n, greedy=True, stop_at_eos=stop_at_eos)
    return list(generate_ids(run.module, prompt, config, run.tokenizer.eos_id))


def test_export_writes_a_checked_decoder_graph(exported, gpt_run):
    names = {p.name for p in exported.iterdir()}
    assert names <= EXPORT_FORMATS["onnx"].entries
    assert names >= {"model.onnx", "genai_config.json", "config.json", "generation_config.json", "tokenizer.json",
                     "tokenizer_config.json", "special_tokens_map.json"}
    assert "model.onnx.data" not in names  # a small model's weights stay inside model.onnx
    onnx.checker.check_model(str(exported / "model.onnx"), full_check=True)

    graph = onnx.load(str(exported / "model.onnx")).graph
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*graph.input, *graph.output]}
    run = tinylm.load(gpt_run)
    assert [v.name for v in graph.input] == ["input_ids", "attention_mask", "position_ids", *past_names(2)]
    assert [v.name for v in graph.output] == ["logits", *present_names(2)]
    assert shapes["input_ids"] == ["batch", "seq"] and shapes["attention_mask"] == ["batch", "past_seq"]
    assert shapes["past_key_values.1.value"] == ["batch", 4, "past", 8]
    assert shapes["present.0.key"] == ["batch", 4, "past_seq", 8]
    assert shapes["logits"] == ["batch", "seq", run.tokenizer.vocab_size]

    config = json.loads((exported / "config.json").read_text())
    assert (config["model_type"], config["n_positions"], config["n_layer"]) == ("gpt2", BLOCK, 2)
    genai = json.loads((exported / "genai_config.json").read_text())["model"]
    assert (genai["context_length"], genai["eos_token_id"], genai["vocab_size"]) == (
        BLOCK, run.tokenizer.eos_id, run.tokenizer.vocab_size)
    assert (genai["decoder"]["num_hidden_layers"], genai["decoder"]["head_size"]) == (2, 8)


def test_prompt_logits_equal_tinylm(exported, gpt_run):
    """The first call, with a past of length 0, gives tinylm's logits for every position of the prompt."""
    run = tinylm.load(gpt_run)
    ids = run.tokenizer.encode(PROMPT)[:40]
    session = OnnxGenerator(exported, threads=1)
    logits, cache = session.step(ids, session.empty_cache())
    np.testing.assert_allclose(logits, tinylm_logits(run, ids), rtol=0, atol=1e-4)
    assert len(cache) == 4 and cache[0].shape == (1, 4, len(ids), 8)


def test_cached_steps_equal_tinylm_full_forward(exported, gpt_run):
    """A step after a past (one token, then three) gives the logits of one pass over the longer sequence."""
    run = tinylm.load(gpt_run)
    ids = run.tokenizer.encode(PROMPT)[:40]
    full = tinylm_logits(run, ids)
    session = OnnxGenerator(exported, threads=1)
    _, cache = session.step(ids[:36], session.empty_cache())
    one, cache = session.step(ids[36:37], cache)
    np.testing.assert_allclose(one, full[36:37], rtol=0, atol=1e-4)
    three, cache = session.step(ids[37:40], cache)
    np.testing.assert_allclose(three, full[37:40], rtol=0, atol=1e-4)
    assert cache[0].shape[2] == 40


def test_a_left_padded_batch_gives_each_prompts_logits(exported, gpt_run):
    """Batch and padding as optimum feeds them: shorter prompts padded on the left (attention_mask 0), position
    ids counting real tokens only; then one cached step for both rows."""
    run = tinylm.load(gpt_run)
    prompts = [run.tokenizer.encode(PROMPT)[:12], run.tokenizer.encode("Citizen: speak")[:5]]
    pad = run.tokenizer.pad_id
    width = max(map(len, prompts))
    ids = np.array([[pad] * (width - len(p)) + p for p in prompts], np.int64)
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in prompts], np.int64)
    positions = np.clip(mask.cumsum(1) - 1, 0, None)
    session = OnnxGenerator(exported, threads=1).session
    feed = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
    feed |= {name: np.zeros((2, 4, 0, 8), np.float32) for name in past_names(2)}
    logits, *present = session.run(None, feed)
    nxt = np.array([[3], [5]], np.int64)
    feed = {"input_ids": nxt, "attention_mask": np.concatenate([mask, np.ones((2, 1), np.int64)], 1),
            "position_ids": positions[:, -1:] + 1, **dict(zip(past_names(2), present))}
    step, *_ = session.run(None, feed)
    for row, prompt in enumerate(prompts):
        ours = tinylm_logits(run, prompt + [int(nxt[row, 0])])
        np.testing.assert_allclose(logits[row, width - len(prompt):], ours[:-1], rtol=0, atol=1e-4)
        np.testing.assert_allclose(step[row], ours[-1:], rtol=0, atol=1e-4)


def test_onnxruntime_greedy_ids_equal_tinylm(spread):
    run, folder = spread
    prompt = run.tokenizer.encode(PROMPT)[:6]
    ours = tinylm_greedy(run, prompt, 48)
    assert len(set(ours)) >= 5  # not one token repeated: the comparison tests the cache
    assert generate_onnx(folder, prompt, 48, threads=1, stop_at_eos=False) == ours
    stopped = tinylm_greedy(run, prompt, 48, stop_at_eos=True)
    assert OnnxGenerator(folder, threads=2).generate(prompt, 48) == stopped


def test_onnxruntime_genai_greedy_ids_equal_tinylm(spread):
    og = pytest.importorskip("onnxruntime_genai")
    run, folder = spread
    prompt = run.tokenizer.encode(PROMPT)[:6]
    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + 48, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt)
    theirs = []
    while not generator.is_done():
        generator.generate_next_token()
        theirs.append(int(generator.get_next_tokens()[0]))
    if theirs and theirs[-1] == run.tokenizer.eos_id:  # onnxruntime-genai ends on <eos> and keeps it
        theirs.pop()
    ours = tinylm_greedy(run, prompt, 48, stop_at_eos=True)
    assert theirs == ours and len(set(ours)) >= 3

    params = og.GeneratorParams(model)  # the context is the limit: onnxruntime-genai refuses more
    params.set_search_options(max_length=BLOCK + 1)
    with pytest.raises(RuntimeError, match=f"max_length \\({BLOCK + 1}\\) cannot be greater than model context_length"):
        og.Generator(model, params)


def test_large_weights_go_to_model_onnx_data(gpt_run, tmp_path, monkeypatch):
    """Past EXTERNAL_DATA_BYTES (1.8 GB) the weights are written beside the graph, in one file of the format's."""
    from tinylm.publishing import onnx as onnx_export

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)
    run = tinylm.load(gpt_run)
    export_onnx(run, tmp_path)
    assert {"model.onnx", "model.onnx.data"} <= {p.name for p in tmp_path.iterdir()} <= EXPORT_FORMATS["onnx"].entries
    assert (tmp_path / "model.onnx").stat().st_size < (tmp_path / "model.onnx.data").stat().st_size
    onnx.checker.check_model(str(tmp_path / "model.onnx"))
    ids = run.tokenizer.encode(PROMPT)[:20]
    session = OnnxGenerator(tmp_path, threads=1)
    np.testing.assert_allclose(session.step(ids, session.empty_cache())[0], tinylm_logits(run, ids), rtol=0, atol=1e-4)


def test_generation_stops_at_the_context(exported, gpt_run):
    run = tinylm.load(gpt_run)
    prompt = run.tokenizer.encode(PROMPT)[:10]
    session = OnnxGenerator(exported, threads=1)
    assert len(session.generate(prompt, BLOCK - 10, stop_at_eos=False)) == BLOCK - 10
    with pytest.raises(TinyLMError, match=f"10 prompt tokens \\+ 55 new ones exceed the model's context of {BLOCK}"):
        session.generate(prompt, BLOCK - 9)
    _, cache = session.step(prompt * 6, session.empty_cache())
    with pytest.raises(TinyLMError, match="positions 60..64 are past the model's context"):
        session.step(prompt[:5], cache)


def test_non_gpt_runs_are_refused(tmp_path, shakespeare_text, capsys):
    (tmp_path / "corpus.txt").write_text(shakespeare_text[:5_000], encoding="utf-8")
    config = tinylm.RunConfig(data=tinylm.DataConfig(source=str(tmp_path / "corpus.txt"), block_size=16),
                              model=model_config("markov", order=3), train=tinylm.TrainConfig(epochs=1))
    tinylm.train(config, out=tmp_path / "markov", progress=False, echo=lambda s: None)
    with pytest.raises(TinyLMError, match="--format onnx exports GPT runs only"):
        tinylm.export_run(tmp_path / "markov", tmp_path / "out", format="onnx")
    capsys.readouterr()
    assert main(["export", str(tmp_path / "markov"), str(tmp_path / "out"), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --format onnx exports GPT runs only (family gpt") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    with pytest.raises(TinyLMError, match="is not an ONNX export"):
        OnnxGenerator(tmp_path / "markov")


def test_cli_export(gpt_run, tmp_path, capsys):
    assert main(["export", str(gpt_run), str(tmp_path / "onnx"), "--format", "onnx"]) == 0
    assert "model.onnx" in capsys.readouterr().out
    assert (tmp_path / "onnx" / "model.onnx").is_file()


def test_a_missing_onnx_package_names_the_extra(gpt_run, tmp_path, capsys, monkeypatch):
    import sys

    run_dir = gpt_run
    monkeypatch.setitem(sys.modules, "onnx", None)  # what an environment without the package raises
    assert main(["export", str(run_dir), str(tmp_path / "o"), "--format", "onnx"]) == 2
    assert "pip install 'tinylm[onnx]'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
