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
