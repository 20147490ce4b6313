"""The model contract, checked on every registered model name (tinylm/models)."""

from __future__ import annotations

import pytest
import torch

from tinylm.errors import TinyLMError
from tinylm.models import MODEL_NAMES, build_model, config_from_dict, config_to_dict, model_config

VOCAB = 11


def make(name: str, **overrides):
    torch.manual_seed(0)
    return build_model(model_config(name, vocab_size=VOCAB, **overrides)).eval()


@pytest.mark.parametrize("name", sorted(MODEL_NAMES))
def test_forward_shapes(name):
    model = make(name)
    logits, state = model(torch.randint(0, VOCAB, (3, 7)))
    assert logits.shape == (3, 7, VOCAB)
    assert state is not None


@pytest.mark.parametrize("name", sorted(MODEL_NAMES))
def test_carried_state_equals_one_pass(name):
    """Feeding a sequence in pieces with the returned state gives the logits of one full pass:
    what generation relies on to cost one step per new token."""
    model = make(name, layers=2, head="mlp")
    ids = torch.randint(0, VOCAB, (2, 9))
    full, _ = model(ids)
    first, state = model(ids[:, :5])
    pieces = [first]
    for t in range(5, 9):
        logits, state = model(ids[:, t : t + 1], state)
        pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MODEL_NAMES))
def test_config_round_trips_through_json_dict(name):
    config = model_config(name, vocab_size=VOCAB, hidden=24)
    assert config_from_dict(config_to_dict(config)) == config


def test_exercise_head_and_parameter_count():
    model = make("lstm", embed=64, hidden=128, layers=1, head="mlp")
    expected = VOCAB * 64 + 4 * 128 * (64 + 128 + 2) + (128 * 128 + 128) + (128 * VOCAB + VOCAB)
    assert model.num_parameters() == expected


def test_bad_model_settings_are_user_errors():
    with pytest.raises(TinyLMError, match="unknown model"):
        model_config("transformer-xl")
    with pytest.raises(TinyLMError, match="--hidden"):
        model_config("gru", hidden=0)
    with pytest.raises(TinyLMError, match="--dropout"):
        model_config("lstm", dropout=1.5)


def test_forget_bias_opens_only_the_forget_gates():
    """--forget-bias sets the forget gates' slice (torch orders the gates input, forget, cell, output) of every
    layer: b_ih to the value, b_hh to zero, so their sum is the value; the other gates keep torch's init."""
    plain, opened = make("lstm", hidden=6, layers=2), make("lstm", hidden=6, layers=2, forget_bias=1.0)
    for layer in range(2):
        b_ih, b_hh = (getattr(opened.rnn, f"bias_{k}_l{layer}") for k in ("ih", "hh"))
        assert torch.equal(b_ih[6:12] + b_hh[6:12], torch.ones(6))
        for other in (slice(0, 6), slice(12, 24)):
            assert torch.equal(b_ih[other], getattr(plain.rnn, f"bias_ih_l{layer}")[other])
    assert not torch.equal(plain.rnn.bias_ih_l0[6:12], opened.rnn.bias_ih_l0[6:12])
    with pytest.raises(TinyLMError, match="forget gate"):
        model_config("gru", forget_bias=1.0)
