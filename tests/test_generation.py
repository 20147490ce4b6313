"""Sampling (tinylm/generation/sampling.py) and generation through a loaded run."""

from __future__ import annotations

import math

import pytest
import torch

import tinylm
from tinylm.errors import TinyLMError
from tinylm.generation.sampling import SamplingConfig, choose_next, filter_logits, generate_ids


class FixedLM(torch.nn.Module):
    """Always predicts the same distribution; counts how many positions it was run on."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float)
        self.positions = 0

    def forward(self, ids, state=None):
        self.positions += ids.size(1)
        return self.logits.expand(ids.size(0), ids.size(1), -1), state


def test_tempered_softmax_sharpens_and_flattens():
    logits = torch.tensor([2.0, 1.0, 0.0])
    cold, base, hot = (tinylm.tempered_softmax(logits, t) for t in (0.5, 1.0, 2.0))
    assert cold[0] > base[0] > hot[0]
    torch.testing.assert_close(base, torch.softmax(logits, -1))
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(TinyLMError):
            tinylm.tempered_softmax(logits, bad)


def test_top_k_and_top_p_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, 2, None))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(logits, None, 0.7))  # 0.5 < 0.7, 0.5 + 0.3 reaches it
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(logits, None, 0.01))
    assert kept.tolist() == [[True, False, False, False]]


def test_sampling_follows_the_distribution_and_respects_top_k():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).expand(4000, -1)
    gen = torch.Generator().manual_seed(0)
    draws = choose_next(logits, SamplingConfig(temperature=1.0), gen)
    freq = torch.bincount(draws, minlength=3).float() / 4000
    assert abs(freq[0] - 0.7) < 0.03 and abs(freq[2] - 0.1) < 0.03
    draws = choose_next(logits, SamplingConfig(top_k=1), gen)
    assert (draws == 0).all()


def test_generation_runs_the_prompt_once_then_one_position_per_token():
    model = FixedLM([0.0, 3.0, 1.0])
    out = list(generate_ids(model, [0, 0, 0, 0], SamplingConfig(max_new_tokens=5, greedy=True)))
    assert out == [1] * 5
    assert model.positions == 4 + 5


def test_stop_at_eos_and_banned_tokens():
    model = FixedLM([0.0, 3.0, 1.0])
    assert list(generate_ids(model, [0], SamplingConfig(max_new_tokens=5, greedy=True), eos_id=1)) == []
    out = list(generate_ids(model, [0], SamplingConfig(max_new_tokens=3, greedy=True), banned_ids=(1,)))
    assert out == [2, 2, 2]


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": 0}, "temperature"), ({"temperature": math.nan}, "temperature"),
    ({"temperature": math.inf}, "temperature"), ({"top_k": 0}, "top-k"), ({"top_k": 999}, "top-k"),
    ({"top_p": 0.0}, "top-p"), ({"top_p": 1.5}, "top-p"), ({"max_new_tokens": -1}, "max-new-tokens"),
    ({"max_new_tokens": 10**9}, "max-new-tokens"),
])
def test_bad_sampling_settings(kwargs, match):
    with pytest.raises(TinyLMError, match=match):
        SamplingConfig(**kwargs).validate(vocab_size=50)


def test_loaded_run_generates_reproducibly_and_streams(trained_run):
    a = trained_run.generate("ROMEO:", max_new_tokens=60, temperature=0.8, seed=3)
    b = trained_run.generate("ROMEO:", max_new_tokens=60, temperature=0.8, seed=3)
    assert a == b and a.startswith("ROMEO:") and len(a) == len("ROMEO:") + 60
    streamed = "".join(trained_run.stream("ROMEO:", max_new_tokens=60, temperature=0.8, seed=3))
    assert "ROMEO:" + streamed == a
    greedy = trained_run.generate("ROMEO:", max_new_tokens=30, greedy=True)
    assert greedy == trained_run.generate("ROMEO:", max_new_tokens=30, temperature=1e-6, seed=9)


def test_prompt_with_unknown_characters_does_not_crash(trained_run, capsys):
    text = trained_run.generate("Zürich ☃", max_new_tokens=10, seed=0)
    assert text.startswith("Zürich ☃")
    assert "not in the vocabulary" in capsys.readouterr().err


def test_empty_prompt_starts_a_new_text(trained_run):
    assert len(trained_run.generate("", max_new_tokens=20, seed=1)) > 0


def test_recurrent_sampling_switches_onednn_off_only_while_sampling(trained_run, monkeypatch):
    seen = []
    real_forward = type(trained_run.module).forward

    def spy(self, ids, state=None):
        seen.append(torch.backends.mkldnn.enabled)
        return real_forward(self, ids, state)

    monkeypatch.setattr(type(trained_run.module), "forward", spy)
    before = torch.backends.mkldnn.enabled
    trained_run.generate("A", max_new_tokens=3, seed=0)
    assert seen and not any(seen)
    assert torch.backends.mkldnn.enabled == before
