"""Property tests (hypothesis): tokenizers round-trip, and the sampler's guarantees hold for any logits."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tinylm.generation.sampling import SamplingConfig, choose_next, filter_logits
from tinylm.tokenizers import TOKENIZER_BUILDERS, TokenizerConfig, build_tokenizer

TRAINING_TEXT = ("It was the best of times, it was the worst of times; it was the age of wisdom?\n"
                 "Ünïcödé — naïve café, 東京 🙂\ttabs and  double  spaces.\n") * 20
LOSSLESS_KINDS = [kind for kind in ("char", "bpe") if kind in TOKENIZER_BUILDERS]
TOKENIZERS = {kind: build_tokenizer(TokenizerConfig(kind, vocab_size=300), TRAINING_TEXT) for kind in LOSSLESS_KINDS}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("kind", LOSSLESS_KINDS)
@SETTINGS
@given(text=st.text(alphabet=sorted(set(TRAINING_TEXT)), max_size=200))
def test_round_trip_over_the_vocabulary(kind, text):
    tokenizer = TOKENIZERS[kind]
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.skipif("bpe" not in TOKENIZER_BUILDERS, reason="no bpe tokenizer registered")
@SETTINGS
@given(text=st.text(max_size=100))
def test_byte_level_bpe_round_trips_any_unicode(text):
    tokenizer = TOKENIZERS["bpe"]
    assert tokenizer.decode(tokenizer.encode(text)) == text


logits_strategy = st.integers(2, 40).flatmap(
    lambda v: st.lists(st.floats(-30, 30, allow_nan=False), min_size=v, max_size=v)
)


@SETTINGS
@given(values=logits_strategy, top_k=st.one_of(st.none(), st.integers(1, 40)),
       top_p=st.one_of(st.none(), st.floats(1e-6, 1.0)), temperature=st.floats(0.05, 20), seed=st.integers(0, 2**31))
@example(values=[0.0] + [1.0] * 12 + [1.401298464324817e-45], top_k=13, top_p=None, temperature=2.0, seed=0)
def test_sampler_stays_in_the_vocabulary_and_filters_keep_a_token(values, top_k, top_p, temperature, seed):
    logits = torch.tensor([values])
    vocab = logits.size(-1)
    top_k = None if top_k is None else min(top_k, vocab)
    scaled = logits / temperature  # what the filters see (tiny values may round to equal ones here)
    kept = torch.isfinite(filter_logits(scaled, top_k, top_p))
    assert kept.sum() >= 1
    assert kept[0][scaled[0] == scaled[0].max()].any()  # a most likely token always survives (ties: one of them)
    if top_k is not None:
        assert kept.sum() <= top_k or bool((scaled[0] == scaled[0].topk(top_k).values[-1]).sum() > 1)
    config = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    token = choose_next(logits, config, torch.Generator().manual_seed(seed))
    assert 0 <= int(token) < vocab and bool(kept[0, token])


@SETTINGS
@given(values=logits_strategy, seed=st.integers(0, 2**31))
def test_temperature_to_zero_is_greedy(values, seed):
    logits = torch.tensor([values])
    top2 = torch.topk(logits[0], 2).values
    assume(float(top2[0] - top2[1]) > 1e-3)
    greedy = choose_next(logits, SamplingConfig(greedy=True), None)
    cold = choose_next(logits, SamplingConfig(temperature=1e-6), torch.Generator().manual_seed(seed))
    assert int(cold) == int(greedy) == int(logits.argmax())


@SETTINGS
@given(values=logits_strategy, p=st.floats(1e-6, 1.0))
def test_top_p_keeps_the_smallest_set_reaching_p(values, p):
    logits = torch.tensor([values])
    kept = torch.isfinite(filter_logits(logits, None, p))[0]
    probs = torch.softmax(logits[0].double(), -1)
    mass = probs[kept].sum().item()
    assert mass >= p - 1e-6 or math.isclose(mass, 1.0)
    # dropping the least likely kept token would fall below p
    if kept.sum() > 1:
        assert mass - probs[kept].min().item() < p + 1e-6
