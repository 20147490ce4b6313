"""Stage 6: measuring a model. Loss (nats per token), perplexity and bits per character.

Bits per character divides the total information by the number of characters of the scored text, not
of tokens, so models with different tokenizers compare fairly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable

import torch
import torch.nn.functional as F

from .data import IGNORE, evaluation_examples
from .errors import TinyLMError

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


def safe_batch_size(requested: int, block_size: int, vocab_size: int) -> int:
    """Shrink the evaluation batch so its logits stay under _MAX_LOGITS (large vocabularies)."""
    return max(1, min(requested, _MAX_LOGITS // max(1, block_size * vocab_size)))


@torch.no_grad()
def token_losses(
    model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device | str = "cpu"
) -> tuple[float, int]:
    """(total nats, scored tokens) over (x, y) batches; IGNORE targets are not scored."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            logits, _ = model(x, None)
            total += F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), ignore_index=IGNORE, reduction="sum"
            ).item()
            count += int((y != IGNORE).sum())
    finally:
        model.train(was_training)
    return total, count


def evaluate_text(model: torch.nn.Module, tokenizer, text: str, data, batch_size: int,
                  device: torch.device | str = "cpu") -> EvalResult:
    """Score `text` the way the run's data config cuts it (windows or lines)."""
    examples = evaluation_examples(tokenizer, text, data)
    batch_size = safe_batch_size(batch_size, data.block_size, tokenizer.vocab_size)
    total, count = token_losses(model, examples.batches(batch_size), device)
    if count == 0:
        raise TinyLMError("the evaluation text has nothing to score (too short)")
    return summarize(total, count, examples.chars, examples.tokens)


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
