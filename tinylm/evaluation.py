"""Stage 6: measuring a model. Loss (nats per token), perplexity and bits per character.

Bits per character divides the total information by the number of characters of the scored text, not
of tokens, so models with different tokenizers compare fairly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .data import IGNORE, eval_batches

# Cap on B*T*V logits held at once during evaluation (float32: 4 bytes each).
_MAX_LOGITS = 16_000_000


@dataclass
class EvalResult:
    loss: float
    """Mean cross-entropy in nats per scored token."""
    perplexity: float
    bits_per_char: float
    tokens: int
    """Number of scored tokens."""
    chars: int
    """Characters of the scored text."""

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def token_losses(
    model: torch.nn.Module,
    ids: torch.Tensor,
    block_size: int,
    target: str = "every",
    batch_size: int = 128,
    device: torch.device | str = "cpu",
) -> tuple[float, int]:
    """(total nats, scored tokens) over the whole of `ids`, every token scored once."""
    was_training = model.training
    model.eval()
    vocab = None
    total, count = 0.0, 0
    try:
        for x, y in _batches(model, ids, block_size, target, batch_size):
            x, y = x.to(device), y.to(device)
            logits, _ = model(x, None)
            vocab = vocab or logits.size(-1)
            total += F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), ignore_index=IGNORE, reduction="sum"
            ).item()
            count += int((y != IGNORE).sum())
    finally:
        model.train(was_training)
    return total, count


def _batches(model, ids, block_size, target, batch_size):
    vocab = getattr(getattr(model, "config", None), "vocab_size", 0) or 1
    batch_size = max(1, min(batch_size, _MAX_LOGITS // max(1, block_size * vocab)))
    return eval_batches(ids, block_size, target, batch_size)


def summarize(total_nats: float, tokens: int, text_chars: int, text_tokens: int) -> EvalResult:
    """Turn summed nats into loss, perplexity and bits per character.

    The scored tokens are all but the first (or first block_size) tokens of the text, so the character
    count is scaled by the scored share of the tokens (exact for char-level tokenizers).
    """
    loss = total_nats / max(tokens, 1)
    chars = max(1, round(text_chars * tokens / max(text_tokens, 1)))
    return EvalResult(
        loss=loss,
        perplexity=math.exp(min(loss, 700.0)),
        bits_per_char=total_nats / math.log(2) / chars,
        tokens=tokens,
        chars=chars,
    )
