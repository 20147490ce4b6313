"""Loss, perplexity and bits per character (tinylm/evaluation/scoring.py)."""

from __future__ import annotations

import math

import pytest
import torch

from tinylm.data import eval_batches
from tinylm.evaluation.scoring import summarize, token_losses


class Uniform(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def forward(self, ids, state=None):
        return torch.zeros(ids.size(0), ids.size(1), self.vocab), state


def test_uniform_model_scores_log_vocab_on_every_token():
    ids = torch.randint(0, 13, (1001,))
    total, count = token_losses(Uniform(13), eval_batches(ids, block_size=64, target="every", batch_size=4))
    assert count == 1000
    assert math.isclose(total / count, math.log(13), rel_tol=1e-6)


def test_summary_converts_to_perplexity_and_bits_per_char():
    result = summarize(total_nats=1000 * math.log(4), tokens=1000, text_chars=2001, text_tokens=1001)
    assert math.isclose(result.perplexity, 4.0, rel_tol=1e-9)
    # 1000 of the 1001 tokens are scored, so 2001 * 1000 / 1001 = 1999 characters carry 2000 bits
    assert result.chars == 1999
    assert math.isclose(result.bits_per_char, 2000 / 1999, rel_tol=1e-9)


def test_run_evaluates_its_validation_split_and_any_text(trained_run):
    val = trained_run.evaluate()
    last = trained_run.metrics[-1]
    best = min(m["val_loss"] for m in trained_run.metrics)
    assert math.isclose(val.loss, best, rel_tol=1e-4)
    assert math.isclose(val.bits_per_char, val.loss / math.log(2), rel_tol=1e-3)  # char-level: 1 token = 1 char
    assert last["epoch"] == 3
    other = trained_run.evaluate("ROMEO:\nWhat light through yonder window breaks?\n" * 5)
    assert other.tokens == len("ROMEO:\nWhat light through yonder window breaks?\n") * 5 - 1


def _text_examples(ids: torch.Tensor, block_size: int):
    from tinylm.config import DataConfig
    from tinylm.data import EvalSet
    from tinylm.data.windows import stream_batches

    data = DataConfig(block_size=block_size)
    return EvalSet(lambda b: eval_batches(ids, data.block_size, data.target, b), ids.numel(), ids.numel(),
                   streams=lambda n, chunk: stream_batches(ids, n, chunk))


def test_recurrent_model_is_scored_as_one_stream_with_its_state_carried(monkeypatch):
    from tinylm.evaluation import scoring as evaluation
    from tinylm.models import build_model, model_config

    torch.manual_seed(0)
    lstm = build_model(model_config("lstm", vocab_size=11, embed=8, hidden=16, layers=1)).eval()
    ids = torch.randint(0, 11, (300,))
    with torch.no_grad():  # the reference: the whole text through the model in one call
        logits, _ = lstm(ids[None, :-1])
        whole = torch.nn.functional.cross_entropy(logits[0], ids[1:]).item()
    monkeypatch.setattr(evaluation, "EVAL_STREAMS", 1)
    monkeypatch.setattr(evaluation, "_MAX_LOGITS", 11 * 37)  # read in chunks of 37 tokens
    result = evaluation.score(lstm, _text_examples(ids, block_size=16), 4, 16, 11)
    assert result.context == "stream" and result.tokens == 299
    assert math.isclose(result.loss, whole, rel_tol=1e-5)
    # each 16-token window from a zero state scores differently: the state carried through is what counts
    windows_total, windows_count = token_losses(lstm, eval_batches(ids, 16, "every", 4))
    assert abs(windows_total / windows_count - whole) > 1e-4


def test_fixed_context_models_are_scored_by_windows():
    from tinylm.evaluation.scoring import score
    from tinylm.models import build_model, model_config

    gpt = build_model(model_config("gpt", vocab_size=11, layers=1, heads=1, embed=8, block_size=16))
    ids = torch.randint(0, 11, (100,))
    result = score(gpt, _text_examples(ids, block_size=16), 4, 16, 11)
    total, count = token_losses(gpt, eval_batches(ids, 16, "every", 4))
    assert result.context == "windows" and count == result.tokens == 99
    assert math.isclose(result.loss, total / count, rel_tol=1e-6)


@pytest.mark.parametrize("name", ["lstm", "gpt"])
def test_ranks_share_the_evaluation_and_their_sums_equal_one_process(name):
    from tinylm.evaluation.scoring import score
    from tinylm.models import build_model, model_config

    torch.manual_seed(0)
    extra = {"hidden": 16, "layers": 1} if name == "lstm" else {"layers": 1, "heads": 1, "block_size": 16}
    model = build_model(model_config(name, vocab_size=11, embed=8, **extra)).eval()
    ids = torch.randint(0, 11, (500,))
    whole = score(model, _text_examples(ids, block_size=16), 4, 16, 11)
    parts = []  # what each of 3 ranks contributes to the all-reduce
    for rank in range(3):
        score(model, _text_examples(ids, block_size=16), 4, 16, 11, shard=(rank, 3),
              all_sum=lambda values: parts.append(values) or values)
    assert all(0 < count < whole.tokens for _, count in parts)  # each rank scored only its share
    assert sum(count for _, count in parts) == whole.tokens
    assert math.isclose(sum(total for total, _ in parts) / whole.tokens, whole.loss, rel_tol=1e-6)
    summed = score(model, _text_examples(ids, block_size=16), 4, 16, 11, shard=(1, 3),
                   all_sum=lambda values: [sum(p[0] for p in parts), sum(p[1] for p in parts)])
    assert summed.tokens == whole.tokens and math.isclose(summed.loss, whole.loss, rel_tol=1e-6)
