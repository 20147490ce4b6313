"""Stage 6: measuring a model. Loss (nats per token), perplexity and bits per character.

Bits per character divides the total information by the number of characters of the scored text, not
of tokens, so models with different tokenizers compare fairly.

Every token of the text is scored once, with as much context as the model can use: a model that carries
its state (recurrent) reads the text as a few long streams, so only the first tokens of each stream lack
context; a model with a fixed window (GPT, n-gram) scores non-overlapping windows, as nanoGPT does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F

from ..data import IGNORE, EvalSet, evaluation_examples
from ..errors import TinyLMError

# Cap on B*T*V logits held at once during evaluation (float32: 4 bytes each).
_MAX_LOGITS = 16_000_000
# Streams a stateful model reads the text as: the first tokens of each lack context, so few; but each runs
# sequentially, so not one. With 8, under 0.01% of Tiny Shakespeare's validation tokens start cold.
EVAL_STREAMS = 8


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
    context: str = "windows"
    """How the text was read: "stream" (state carried through the text) or "windows" (each from scratch)."""

    def to_dict(self) -> dict:
        return asdict(self)


def safe_batch_size(requested: int, block_size: int, vocab_size: int) -> int:
    """Shrink the evaluation batch so its logits stay under _MAX_LOGITS (large vocabularies)."""
    return max(1, min(requested, _MAX_LOGITS // max(1, block_size * vocab_size)))


@torch.no_grad()
def token_losses(
    model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device | str = "cpu",
    carry_state: bool = False,
) -> tuple[float, int]:
    """(total nats, scored tokens) over (x, y) batches; IGNORE targets are not scored. With `carry_state`
    each batch continues the one before (stream_batches), so the model's state is passed along."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    state = None
    try:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            logits, state = model(x, state if carry_state else None)
            total += F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), ignore_index=IGNORE, reduction="sum"
            ).item()
            count += int((y != IGNORE).sum())
    finally:
        model.train(was_training)
    return total, count


def score(model: torch.nn.Module, examples: EvalSet, batch_size: int, block_size: int, vocab_size: int,
          device: torch.device | str = "cpu", shard: tuple[int, int] = (0, 1),
          all_sum: Callable[[list[float]], list[float]] | None = None) -> EvalResult:
    """Score every token of an EvalSet once: as streams for models that carry their state, else by windows.

    Several processes (DDP) share the work: with `shard=(rank, world)` each scores its own streams (or every
    world-th batch of windows) and `all_sum` adds up the nats and token counts of all of them, so every rank
    gets the same result as one process would, in 1/world of the time.
    """
    if getattr(model, "carries_state", False) and examples.streams is not None:
        chunk = max(1, min(512, _MAX_LOGITS // (EVAL_STREAMS * vocab_size)))
        batches, carry_state, context = examples.streams(EVAL_STREAMS, chunk), True, "stream"
    else:
        batch_size = safe_batch_size(batch_size, block_size, vocab_size)
        batches, carry_state, context = examples.batches(batch_size), False, "windows"
    rank, world = shard
    if world > 1:
        batches = _shard(batches, rank, world, by_rows=carry_state)
    total, count = token_losses(model, batches, device, carry_state=carry_state)
    if all_sum is not None:
        total, count = all_sum([total, count])
        count = round(count)
    if count == 0:
        raise TinyLMError("the evaluation text has nothing to score (too short)")
    return summarize(total, count, examples.chars, examples.tokens, context)


def _shard(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], rank: int, world: int,
           by_rows: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's part: every world-th row of each batch (streams, whose rows continue from batch to batch),
    or every world-th batch (independent windows)."""
    for i, (x, y) in enumerate(batches):
        if by_rows:
            if rank < x.size(0):
                yield x[rank::world], y[rank::world]
        elif i % world == rank:
            yield x, y


def evaluate_text(model: torch.nn.Module, tokenizer, text: str, data, batch_size: int,
                  device: torch.device | str = "cpu") -> EvalResult:
    """Score `text` the way the run's data config cuts it (windows or lines)."""
    examples = evaluation_examples(tokenizer, text, data)
    return score(model, examples, batch_size, data.block_size, tokenizer.vocab_size, device)


def summarize(total_nats: float, tokens: int, text_chars: int, text_tokens: int,
              context: str = "windows") -> EvalResult:
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
        context=context,
    )
