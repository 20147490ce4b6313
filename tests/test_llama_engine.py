"""Generation through llama.cpp (tinylm/machine/llama_engine.py) and its place among the precisions auto measures
(tinylm/machine/fast_inference.py). The engine's own tests need llama-cpp-python (it compiles for ~20 minutes, so
CI does not install it) and skip with that reason; the choice of candidates is tested on both sides everywhere."""

from __future__ import annotations

import pytest
import torch

from tinylm.errors import TinyLMError
from tinylm.generation.sampling import SamplingConfig, generate_ids
from tinylm.machine import devices, fast_inference, llama_engine
from tinylm.models import build_model, model_config


def _gpt(embed=64, block=32, vocab=70, seed=0, std=0.3):
    torch.manual_seed(seed)
    model = build_model(model_config("gpt", vocab_size=vocab, block_size=block, layers=2, heads=2, embed=embed,
                                     dropout=0.0)).eval()
    with torch.no_grad():  # weights large enough that greedy texts vary (an initial GPT repeats one token)
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, std)
    return model


def test_auto_offers_llama_cpp_only_where_installed_and_only_for_gpts(monkeypatch):
    gpt, lstm = _gpt(), build_model(model_config("lstm", vocab_size=70, embed=16, hidden=32))
    for installed in (False, True):
        monkeypatch.setattr(llama_engine, "available", lambda installed=installed: installed)
        assert ("llama.cpp" in devices.generation_candidates("auto", "cpu")) is installed
        assert ("llama.cpp" in fast_inference.candidates_for(gpt, "auto", "cpu")) is installed
        assert "llama.cpp" not in fast_inference.candidates_for(lstm, "auto", "cpu")
        assert "llama.cpp" not in devices.generation_candidates("auto", "cuda")
    assert "llama.cpp" not in fast_inference.candidates_for(_gpt(embed=48), "auto", "cpu")  # no q8_0 blocks


def test_asking_for_llama_cpp_where_it_cannot_run_is_one_line(monkeypatch):
    monkeypatch.setattr(llama_engine, "available", lambda: False)
    with pytest.raises(TinyLMError, match="pip install llama-cpp-python"):
        devices.generation_candidates("llama.cpp", "cpu")
    monkeypatch.setattr(llama_engine, "available", lambda: True)
    with pytest.raises(TinyLMError, match="runs GPTs built like GPT-2"):
        fast_inference.candidates_for(build_model(model_config("gru", vocab_size=70)), "llama.cpp", "cpu")
    with pytest.raises(TinyLMError, match="CPUs only"):
        devices.generation_candidates("llama.cpp", "cuda")


def test_the_cli_names_the_missing_engine(tmp_path, capsys, monkeypatch):
    from tinylm.cli import main

    monkeypatch.setattr(llama_engine, "available", lambda: False)
    assert main(["sample", str(tmp_path / "none"), "--precision", "llama.cpp"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install llama-cpp-python" in err  # before the run is looked for


# -- the engine itself (llama.cpp installed) --------------------------------------------------------------------
@pytest.fixture()
def engine_for():
    pytest.importorskip("llama_cpp", reason="llama.cpp is not installed (pip install llama-cpp-python; it compiles "
                                            "for ~20 minutes)")
    pytest.importorskip("gguf")
    return llama_engine.LlamaCppGPT


@pytest.mark.parametrize("outtype, tolerance", [("f32", 2e-3), ("q8_0", 0.04)])
def test_the_engine_gives_the_gpts_logits_with_its_contract(engine_for, outtype, tolerance):
    """f32 weights: the GPT's logits (llama.cpp keeps its KV cache in f16); q8_0 (what generation uses:
    llama.cpp rounds the activations to 8 bits too): within 4% of the largest logit, at a trained model's scale."""
    model = _gpt(std=0.05)
    engine = engine_for(model, outtype)
    ids = torch.randint(70, (1, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, _ = model(ids, None)
        whole, state = engine(ids, None)
        logits, carried = engine(ids[:, :12], None)  # a prompt, then one token at a time
        rows = [logits]
        for i in range(12, ids.size(1)):
            logits, carried = engine(ids[:, i:i + 1], carried)
            rows.append(logits)
    scale = expected.abs().max()
    assert whole.shape == expected.shape and state == tuple(ids[0].tolist()) == carried
    assert (whole - expected).abs().max() <= tolerance * scale
    assert torch.allclose(torch.cat(rows, dim=1), whole, atol=1e-4)


def test_a_branch_from_an_earlier_state_rewinds(engine_for):
    model = _gpt()
    engine = engine_for(model, "f32")
    ids = torch.randint(70, (1, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _, state = engine(ids[:, :6], None)
        a, _ = engine(ids[:, 6:7], state)
        engine(ids[:, 7:], None)  # the context moves on elsewhere
        b, _ = engine(ids[:, 6:7], state)  # back to the earlier state
    assert torch.allclose(a, b, atol=1e-5)


def test_greedy_text_equals_the_torch_path_past_the_block(engine_for):
    """The slide (the last half re-encoded from position 0) is the GPT's: 3 blocks of greedy text agree."""
    model = _gpt(block=16)
    engine = engine_for(model, "f32")  # the slide, not the rounding, is what is checked
    config = SamplingConfig(max_new_tokens=48, greedy=True, stop_at_eos=False, precision="fp32")
    ours = list(generate_ids(model, [1, 2, 3], config))
    theirs = list(generate_ids(engine, [1, 2, 3], config))
    assert len(set(ours)) >= 5
    assert theirs == ours


def test_auto_measures_the_engine_and_sampling_uses_it(engine_for, monkeypatch, tmp_path):
    monkeypatch.setenv("TINYLM_CACHE_DIR", str(tmp_path))
    model = _gpt(embed=256, block=64, vocab=300, std=0.05)  # large enough for auto to measure
    runner = fast_inference.model_for_generation(model, "llama.cpp")
    assert runner.inference_precision == "llama.cpp"
    ranking = fast_inference.auto_ranking(model, fast_inference.candidates_for(model, "auto", "cpu"))
    assert "llama.cpp" in ranking
    text = list(generate_ids(model, [1, 2], SamplingConfig(max_new_tokens=20, seed=3, precision="llama.cpp")))
    assert len(text) == 20
