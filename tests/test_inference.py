"""The generation fast path (tinylm/machine/fast_inference.py): bf16 and int8 inference copies of any model, the
`precision` option of sampling, its fallback where oneDNN cannot pack bf16, and `auto`: the fastest precision
that runs and agrees with fp32, measured once per CPU, threads and model shape and cached in a JSON file.
Both sides of every capability (bf16 / int8 available or not, a kernel that raises) are simulated by patching
tinylm.machine.devices, the policy's owner, so they run on any machine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import tiny_config

import tinylm
from tinylm.errors import TinyLMError
from tinylm.generation.sampling import SamplingConfig, generate_ids
from tinylm.machine import devices
from tinylm.machine import fast_inference as inference
from tinylm.machine.fast_inference import (
    TOLERANCES,
    BF16Linear,
    Int8Linear,
    PackedLinear,
    inference_copy,
    model_for_generation,
)
from tinylm.models import build_model, model_config

VOCAB = 37


def small_model(name: str, seed: int = 0) -> torch.nn.Module:
    """A small random GPT or LSTM (tens of thousands of parameters) with every Linear layer in play, its
    matrices scaled up so that the logits spread over a few units, as a trained model's do."""
    torch.manual_seed(seed)
    if name == "gpt":
        config = model_config("gpt", vocab_size=VOCAB, block_size=16, layers=2, heads=2, embed=32, dropout=0.0)
    else:
        config = model_config("lstm", vocab_size=VOCAB, embed=16, hidden=64, layers=2, dropout=0.0, head="mlp")
    model = build_model(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5.0)
    return model


def relative_difference(fast: torch.nn.Module, model: torch.nn.Module, ids: torch.Tensor) -> float:
    """max |logit difference| / max |fp32 logit| over the steps of `ids` (what TOLERANCES bound)."""
    reference = steps(model, ids)
    return ((steps(fast, ids) - reference).abs().max() / reference.abs().max()).item()


def steps(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Logits of a prompt pass, then one token at a time with the carried state (the path generation takes)."""
    with torch.inference_mode():
        logits, state = model(ids[:, :5], None)
        out = [logits]
        for i in range(5, ids.size(1)):
            logits, state = model(ids[:, i : i + 1], state)
            out.append(logits)
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_fast_copy_logits_match_fp32_within_the_stated_tolerance(name, precision):
    model = small_model(name)
    ids = torch.randint(0, VOCAB, (1, 40))  # past the GPT's block of 16: the sliding cache runs in bf16 too
    reference = steps(model, ids)
    fast = inference_copy(model, precision)
    expected = {"bf16": PackedLinear if devices.bf16_packing_supported() else BF16Linear,
                "int8": Int8Linear}[precision]
    linears = [m for m in fast.modules() if isinstance(m, (PackedLinear, BF16Linear, Int8Linear))]
    assert linears and all(type(m) is expected for m in linears)
    assert not any(type(m) is torch.nn.Linear for m in fast.modules())
    assert reference.abs().max() > 1.0  # logits of a few units: the tolerance is tested at a real scale
    assert 0 < relative_difference(fast, model, ids) < TOLERANCES[precision]  # > 0: lower precision for real
    # the original is untouched and still trainable
    assert not any(isinstance(m, (PackedLinear, BF16Linear, Int8Linear)) for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(steps(model, ids), reference)


MODERN_GPT = {"positions": "rope", "norm": "rmsnorm", "qk_norm": True, "activation": "relu2", "tie_head": False,
              "bias": False}


@pytest.mark.parametrize("native_bf16", ["1", "0"], ids=["native-bf16", "no-native-bf16"])
@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("options", [{}, MODERN_GPT], ids=["gpt2", "modern"])
def test_gpt_copy_keeps_its_cache_in_bf16_where_native_and_agrees_with_fp32(options, precision, native_bf16,
                                                                             monkeypatch):
    """A GPT's inference copy decodes with its KV cache in bf16 where the CPU computes bf16 natively (half the
    bytes for attention to read) and in fp32 elsewhere (emulated bf16 attention is slower), for every
    architecture option, at batch 2, past the block (the slide re-encodes into an fp32 cache that the next step
    converts), and a multi-token call on the decoded cache (the general path) still agrees."""
    monkeypatch.setenv("TINYLM_CPU_BF16", native_bf16)  # both sides of the policy on any machine
    torch.manual_seed(1)
    config = model_config("gpt", vocab_size=VOCAB, block_size=16, layers=2, heads=2, embed=32, dropout=0.0, **options)
    model = build_model(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5.0)
    fast = inference_copy(model, precision)
    ids = torch.randint(0, VOCAB, (2, 40))

    def run(runner):
        with torch.inference_mode():
            logits, state = runner(ids[:, :5], None)
            out = [logits]
            for i in range(5, 30):
                logits, state = runner(ids[:, i : i + 1], state)
                out.append(logits)
            dtypes = {k.dtype for k in state.keys}
            logits, state = runner(ids[:, 30:], state)  # 10 tokens at once onto the decoded cache
            return torch.cat([*out, logits], dim=1), dtypes

    reference, reference_dtypes = run(model)
    got, dtypes = run(fast)
    assert reference_dtypes == {torch.float32}
    assert dtypes == ({torch.bfloat16} if native_bf16 == "1" else {torch.float32})
    assert reference.abs().max() > 1.0
    assert 0 < ((got - reference).abs().max() / reference.abs().max()).item() < TOLERANCES[precision]


def test_int8_leaves_layers_its_kernel_cannot_take_in_bf16():
    torch.manual_seed(0)
    model = build_model(model_config("lstm", vocab_size=VOCAB, embed=8, hidden=40, layers=1, dropout=0.0,
                                     head="mlp")).eval()  # head: Linear(40, 40), Linear(40, V): 40 % 16 != 0
    fast = inference_copy(model, "int8")
    assert not any(isinstance(m, Int8Linear) for m in fast.modules())
    ids = torch.randint(0, VOCAB, (1, 12))
    assert relative_difference(fast, model, ids) < TOLERANCES["bf16"]
    with pytest.raises(TinyLMError, match="CPUs only"):
        inference.resolve_precision(model, "int8", "cuda")


def test_fallback_without_bf16_packing(monkeypatch):
    monkeypatch.setattr(devices, "bf16_packing_supported", lambda: False)
    assert "bf16" not in devices.generation_candidates("auto", "cpu")  # auto never tries an unpacked bf16
    model = small_model("gpt")
    fast = inference_copy(model, "bf16")  # asked for explicitly: the same numerics through F.linear
    assert any(isinstance(m, BF16Linear) for m in fast.modules())
    assert not any(isinstance(m, PackedLinear) for m in fast.modules())
    ids = torch.randint(0, VOCAB, (1, 20))
    assert relative_difference(fast, model, ids) < TOLERANCES["bf16"]
    config = SamplingConfig(max_new_tokens=10, temperature=1.0, seed=0, precision="bf16", stop_at_eos=False)
    assert len(list(generate_ids(model, [1, 2], config))) == 10


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_fp32_generation_runs_the_model_itself_unchanged(name):
    model = small_model(name)
    assert model_for_generation(model, "fp32") is model
    prompt, n = [3, 1, 4], 30
    for config in (SamplingConfig(max_new_tokens=n, greedy=True, precision="fp32"),
                   SamplingConfig(max_new_tokens=n, temperature=1.5, seed=0, precision="fp32")):
        generated = list(generate_ids(model, prompt, config))
        # the same choices by hand, with the same random draws
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            logits, state = model(torch.tensor([prompt]), None)
            expected = []
            for _ in range(n):
                last = logits[:, -1]
                token = last.argmax(-1) if config.greedy else torch.multinomial(
                    torch.softmax(last / config.temperature, -1), 1, generator=generator).squeeze(-1)
                expected.append(int(token))
                logits, state = model(token.view(1, 1), state)
        assert generated == expected


def test_auto_keeps_small_models_in_fp32_without_measuring(monkeypatch):
    model = small_model("gpt")
    assert inference.linear_weights(model) < inference.AUTO_MEASURE_MIN_LINEAR_WEIGHTS
    monkeypatch.setattr(inference, "decode_rates", lambda *a, **k: pytest.fail("measured a small model"))
    assert inference.resolve_precision(model, "auto") == "fp32"
    assert model_for_generation(model, "auto") is model
    assert not inference.choices_path().exists()
    assert inference.resolve_precision(model, "bf16") == "bf16"  # explicit choices are kept
    assert inference.resolve_precision(model, "auto", "cuda") in ("bf16", "fp32")  # one candidate: no measuring
    with pytest.raises(TinyLMError, match="precision"):
        inference.resolve_precision(model, "fp8")
    with pytest.raises(TinyLMError, match="precision"):
        SamplingConfig(precision="fp16").validate(vocab_size=VOCAB)


SPEEDS = {"fp32": 100.0, "int8": 300.0, "bf16": 200.0}


@pytest.fixture
def measured(monkeypatch):
    """auto measures even small models, and each precision decodes at the speed the test sets in `speeds`
    (the real timing is tested on its own below); `calls` lists what was measured."""
    monkeypatch.setattr(inference, "AUTO_MEASURE_MIN_LINEAR_WEIGHTS", 0)
    speeds, calls = dict(SPEEDS), []

    def fake_rates(runners, model, *args, **kwargs):
        for name, runner in runners.items():
            assert getattr(runner, "inference_precision", "fp32") == name
        calls.extend(runners)
        return {name: speeds[name] for name in runners}

    monkeypatch.setattr(inference, "decode_rates", fake_rates)
    return speeds, calls


def test_auto_picks_the_fastest_measured_precision_and_caches_it_per_cpu_and_threads(measured, monkeypatch):
    speeds, calls = measured
    model = small_model("gpt")
    candidates = devices.generation_candidates("auto", "cpu")
    fastest = max(candidates, key=speeds.get)  # int8 on x86-64 torch builds; elsewhere what is there
    assert inference.resolve_precision(model, "auto") == fastest
    assert sorted(calls) == sorted(candidates)  # each candidate measured once
    runner = model_for_generation(model, "auto")
    assert getattr(runner, "inference_precision", "fp32") == fastest
    # the file: one entry naming the CPU, capability, torch, threads and what was measured
    (entry,) = json.loads(inference.choices_path().read_text()).values()
    assert entry["cpu"] == devices.cpu_model() and entry["capability"] == devices.cpu_capability()
    assert entry["torch"] == torch.__version__ and entry["threads"] == torch.get_num_threads()
    assert entry["tokens_per_second"] == {p: speeds[p] for p in candidates}
    assert entry["ranking"][0] == fastest and sorted(entry["ranking"]) == sorted(candidates)
    # later: the same process, then a new one (its memory empty), read the choice instead of measuring
    calls.clear()
    assert inference.resolve_precision(model, "auto") == fastest
    monkeypatch.setattr(inference, "_RANKINGS", {})
    assert inference.resolve_precision(small_model("gpt", seed=1), "auto") == fastest  # same shape, new weights
    assert calls == []
    # another thread count, or another set of candidates (no native bf16 forced), is measured again
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        inference.resolve_precision(model, "auto")
    finally:
        torch.set_num_threads(threads)
    assert sorted(calls) == sorted(candidates)
    monkeypatch.setenv(devices.CPU_BF16_ENV, "0")
    forced = devices.generation_candidates("auto", "cpu")
    assert "bf16" not in inference.auto_ranking(model, forced)
    # a new entry where forcing changed the candidates (not where this process was started forced already)
    assert len(json.loads(inference.choices_path().read_text())) == (2 if forced == candidates else 3)


def test_auto_keeps_fp32_unless_another_precision_is_clearly_faster(measured):
    speeds, _ = measured
    speeds.update(int8=105.0, bf16=95.0)  # within timing noise of fp32
    model = small_model("gpt")
    assert inference.resolve_precision(model, "auto") == "fp32"
    assert model_for_generation(model, "auto") is model
    assert inference.rank({"fp32": 100.0, "int8": 300.0, "bf16": 200.0}) == ["int8", "bf16", "fp32"]
    assert inference.rank({"fp32": 100.0, "int8": 105.0, "bf16": 200.0}) == ["bf16", "int8", "fp32"]
    assert inference.rank({"fp32": 100.0, "int8": 108.0}) == ["fp32", "int8"]


def raising_forward(self, x):
    raise RuntimeError("could not create a primitive descriptor for the int8 primitive\n(more detail)")


@pytest.mark.skipif(not devices.int8_kernel_available(), reason="no int8 kernel in this torch build")
def test_a_kernel_that_fails_is_skipped_with_one_warning_line(measured, monkeypatch, capsys):
    monkeypatch.setattr(Int8Linear, "forward", raising_forward)
    model = small_model("gpt")
    ranking = inference.auto_ranking(model, devices.generation_candidates("auto", "cpu"))
    assert "int8" not in ranking and "fp32" in ranking
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: int8") and "could not create" in err
    config = SamplingConfig(max_new_tokens=6, greedy=True, stop_at_eos=False)
    assert len(list(generate_ids(model, [1, 2], config))) == 6  # auto generates with the next precision
    with pytest.raises(TinyLMError, match="--precision int8 cannot run"):  # asked for: one line, exit 2
        model_for_generation(model, "int8")


@pytest.mark.skipif(not devices.int8_kernel_available(), reason="no int8 kernel in this torch build")
def test_a_kernel_that_fails_after_the_choice_was_cached_falls_back(measured, monkeypatch, capsys):
    assert inference.resolve_precision(small_model("gpt"), "auto") == "int8"  # measured and saved: int8 first
    monkeypatch.setattr(inference, "_RANKINGS", {})  # a later process ...
    monkeypatch.setattr(Int8Linear, "forward", raising_forward)  # ... where the kernel fails
    model = small_model("gpt", seed=1)
    runner = model_for_generation(model, "auto")
    expected = "bf16" if "bf16" in devices.generation_candidates("auto", "cpu") else "fp32"
    assert getattr(runner, "inference_precision", "fp32") == expected
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "int8 generation fails" in err and "Traceback" not in err


@pytest.mark.skipif(not devices.int8_kernel_available(), reason="no int8 kernel in this torch build")
def test_a_kernel_that_disagrees_with_fp32_is_not_used(measured, monkeypatch, capsys):
    real_forward = Int8Linear.forward
    monkeypatch.setattr(Int8Linear, "forward", lambda self, x: real_forward(self, x) * 1.5)  # a wrong kernel
    model = small_model("gpt")
    assert inference.resolve_precision(model, "auto") != "int8"
    assert "int8 generation disagrees" in capsys.readouterr().err
    fallback = model_for_generation(model, "auto")
    assert not any(isinstance(m, Int8Linear) for m in fallback.modules())
    assert any(isinstance(m, Int8Linear) for m in model_for_generation(model, "int8").modules())  # asked for


def test_both_sides_of_the_cpu_capabilities(monkeypatch):
    monkeypatch.setattr(devices, "int8_kernel_available", lambda: True)
    monkeypatch.setattr(devices, "bf16_packing_supported", lambda: True)
    assert devices.generation_candidates("auto", "cpu") == ("fp32", "int8", "bf16")
    monkeypatch.setenv(devices.CPU_BF16_ENV, "0")  # a CPU without native bf16 (what CI's second pass forces)
    monkeypatch.setattr(devices, "bf16_packing_supported", lambda: False)
    assert devices.generation_candidates("auto", "cpu") == ("fp32", "int8")  # int8 converts in ATen's code
    monkeypatch.setattr(devices, "int8_kernel_available", lambda: False)  # e.g. Arm: not measured there
    assert devices.generation_candidates("auto", "cpu") == ("fp32",)
    model = small_model("gpt")
    monkeypatch.setattr(inference, "AUTO_MEASURE_MIN_LINEAR_WEIGHTS", 0)
    assert inference.resolve_precision(model, "auto") == "fp32"  # a single candidate: nothing to measure
    assert not inference.choices_path().exists()


def test_auto_measures_for_real_and_writes_a_readable_file(monkeypatch):
    monkeypatch.setattr(inference, "AUTO_MEASURE_MIN_LINEAR_WEIGHTS", 0)
    model = small_model("gpt")
    inference.choices_path().parent.mkdir(parents=True, exist_ok=True)
    inference.choices_path().write_text("{not json")  # damaged: measured again and rewritten
    candidates = devices.generation_candidates("auto", "cpu")
    ranking = inference.auto_ranking(model, candidates)
    (entry,) = json.loads(inference.choices_path().read_text()).values()
    rates = entry["tokens_per_second"]
    assert set(rates) == set(ranking) <= set(candidates) and "fp32" in ranking
    assert all(rate > 0 for rate in rates.values()) and ranking == inference.rank(rates)
    config = SamplingConfig(max_new_tokens=8, greedy=True, stop_at_eos=False)
    assert len(list(generate_ids(model, [1, 2], config))) == 8
    rates = inference.decode_rates({"fp32": model, "bf16": inference_copy(model, "bf16")}, model, tokens=4, rounds=1)
    assert set(rates) == {"fp32", "bf16"} and all(rate > 0 for rate in rates.values())


def test_copy_is_made_once_and_rebuilt_when_the_weights_change():
    model = small_model("gpt")
    first = model_for_generation(model, "bf16")
    assert first is not model and model_for_generation(model, "bf16") is first
    with torch.no_grad():
        model.lm_head.weight.mul_(2.0)  # an optimizer step, in place
    second = model_for_generation(model, "bf16")
    assert second is not first
    ids = torch.randint(0, VOCAB, (1, 8))
    assert relative_difference(second, model, ids) < TOLERANCES["bf16"]  # the new weights
    assert relative_difference(first, model, ids) > 0.2  # not the old ones
    assert any(isinstance(m, Int8Linear) for m in model_for_generation(model, "int8").modules())


def test_inference_copy_refuses_training():
    fast = inference_copy(small_model("lstm"), "bf16")
    assert not fast.training and not any(p.requires_grad for p in fast.parameters())
    fast.eval()  # allowed: generation calls it
    with pytest.raises(TinyLMError, match="inference copy"):
        fast.train()


def test_recurrent_fast_path_keeps_onednn_off_while_sampling(monkeypatch):
    model = small_model("lstm")
    seen = []
    real_forward = type(model).forward

    def spy(self, ids, state=None):
        seen.append(torch.backends.mkldnn.enabled)
        return real_forward(self, ids, state)

    monkeypatch.setattr(type(model), "forward", spy)
    before = torch.backends.mkldnn.enabled
    out = list(generate_ids(model, [1], SamplingConfig(max_new_tokens=5, seed=0, precision="bf16")))
    assert len(out) == 5 and seen and not any(seen)
    assert torch.backends.mkldnn.enabled == before


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inference")
    corpus = folder / "corpus.txt"
    corpus.write_text("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 40,
                      encoding="utf-8")
    config = tiny_config(corpus, model="gpt", epochs=1, sample_tokens=5)
    tinylm.train(config, out=folder / "run", progress=False, echo=lambda s: None)
    return folder / "run"


def test_sample_cli_with_bf16_precision_end_to_end(gpt_run):
    def sample(*flags):
        result = subprocess.run([sys.executable, "-m", "tinylm", "sample", str(gpt_run), "--prompt", "To be",
                                 "--max-new-tokens", "30", "--seed", "1", *flags],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    fast = sample("--precision", "bf16", "--threads", "1")
    assert fast.startswith("To be") and len(fast.rstrip("\n")) > len("To be")
    run = tinylm.load(gpt_run)  # the command is the API call, in another process: the same text for the seed
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert fast.rstrip("\n") == run.generate("To be", max_new_tokens=30, seed=1, precision="bf16")
    finally:
        torch.set_num_threads(threads)
    bad = subprocess.run([sys.executable, "-m", "tinylm", "sample", str(gpt_run), "--precision", "fp8"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "precision" in bad.stderr
