"""Loss, perplexity and bits per character (tinylm/evaluation.py)."""

from __future__ import annotations

import math

import torch

from tinylm.data import eval_batches
from tinylm.evaluation import summarize, token_losses


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
