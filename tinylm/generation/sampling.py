"""Stage 5: text out. Greedy decoding, multinomial sampling with temperature, top-k and top-p,
stopping at <eos>, and streaming.

Generation only uses the model contract `logits, state = model(ids, state)`: the prompt runs once,
then every new token costs one step with the carried state (hidden state, KV cache, n-gram context).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from ..errors import NonFiniteScores, TinyLMError
from ..machine.fast_inference import PRECISIONS, grad_mode, model_for_generation, sampling_flags

MAX_NEW_TOKENS_LIMIT = 100_000


def tempered_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T): T < 1 sharpens the distribution, T > 1 flattens it, T -> 0 is argmax."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise TinyLMError(f"temperature must be a finite number > 0, got {temperature}")
    return F.softmax(logits.float() / temperature, dim=-1)


@dataclass
class SamplingConfig:
    """How the next token is chosen."""

    max_new_tokens: int = 200
    temperature: float = 1.0
    top_k: int | None = None
    """Keep only the k most likely tokens."""
    top_p: float | None = None
    """Keep the smallest set of tokens whose probability reaches p (nucleus sampling)."""
    greedy: bool = False
    """Always take the most likely token (same as temperature -> 0)."""
    seed: int | None = None
    stop_at_eos: bool = True
    precision: str = "auto"
    """fp32: the model as trained, exactly. bf16: an inference copy whose Linear layers compute in bf16
    (tinylm/machine/fast_inference.py), ~1.6-2x faster at batch 1 on a CPU for models of millions of parameters, logits
    within ~1% of fp32's, so a greedy or seeded text can part from fp32's after a near tie. int8: int8
    weights, CPUs only, often the fastest, logits within ~2%. auto (default): the fastest of these that agrees
    with fp32 on this machine, measured once per CPU, thread count and model shape (tinylm/machine/fast_inference.py);
    fp32 for models under 250k Linear weights."""

    def validate(self, vocab_size: int) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            raise TinyLMError(f"--max-new-tokens must be a whole number >= 0, got {self.max_new_tokens}")
        if self.max_new_tokens > MAX_NEW_TOKENS_LIMIT:
            raise TinyLMError(f"--max-new-tokens {self.max_new_tokens} is over the limit of {MAX_NEW_TOKENS_LIMIT}")
        t = self.temperature
        if not self.greedy and not (math.isfinite(t) and t > 0):
            raise TinyLMError(f"--temperature must be a finite number > 0 (or use --greedy), got {t}")
        if self.top_k is not None and not 1 <= self.top_k <= vocab_size:
            raise TinyLMError(f"--top-k must be between 1 and the vocabulary size {vocab_size}, got {self.top_k}")
        if self.top_p is not None and not (math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise TinyLMError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.precision not in PRECISIONS:
            raise TinyLMError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Set the logits of tokens outside top-k / top-p to -inf. Always keeps the most likely token."""
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = F.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens before it already reach top_p (the first token always stays)
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def choose_next(logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Next token ids (B,) from last-position logits (B, V)."""
    if config.greedy:
        return logits.argmax(dim=-1)
    logits = filter_logits(logits.float() / config.temperature, config.top_k, config.top_p)
    probs = F.softmax(logits, dim=-1)
    try:
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    except RuntimeError as e:  # caught, not checked before: the check would cost every token a sync
        if "probability tensor" not in str(e):
            raise
        raise NonFiniteScores("the model's next-token scores are NaN or infinite: its weights are damaged, or "
                          "training diverged (try a lower --lr)") from None


def generate_ids(
    model: torch.nn.Module,
    prompt_ids: list[int],
    config: SamplingConfig,
    eos_id: int | None = None,
    banned_ids: tuple[int, ...] = (),
    device: torch.device | str = "cpu",
) -> Iterator[int]:
    """Yield new token ids one at a time (stops at eos when config.stop_at_eos; eos is not yielded).
    config.precision picks what runs: `model` itself (fp32), or its bf16 inference copy
    (tinylm/machine/fast_inference.py)."""
    if not prompt_ids:
        raise TinyLMError("generation needs at least one prompt token")
    runner = model_for_generation(model, config.precision, device)
    # A model that sees at most `context_window` tokens (a GPT's block) gets the end of a longer prompt: the
    # same prediction, without running the whole prompt through the sliding context (a 100k-character
    # prompt took 133 s on a block-32 GPT).
    window = getattr(runner, "context_window", None)
    if window and len(prompt_ids) > window:
        prompt_ids = prompt_ids[-window:]
    return grad_mode(runner)(_generate)(runner, prompt_ids, config, eos_id, banned_ids, device)


def _generate(model: torch.nn.Module, prompt_ids: list[int], config: SamplingConfig, eos_id: int | None,
              banned_ids: tuple[int, ...], device: torch.device | str) -> Iterator[int]:
    """generate_ids' loop, run under the grad mode it chose (tinylm.machine.fast_inference.grad_mode)."""
    generator = None
    if config.seed is not None:
        generator = torch.Generator(device=device).manual_seed(config.seed)
    with sampling_flags(model, device):
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
        banned = torch.tensor(sorted(set(banned_ids)), dtype=torch.long, device=device) if banned_ids else None
        logits, state = model(ids, None)
        plain_greedy = config.greedy and banned is None
        for _ in range(config.max_new_tokens):
            if plain_greedy:  # at batch 1 every call counts: the argmax of the last logits, already (1, 1)
                next_id = logits[:, -1].argmax(-1, keepdim=True)
            else:
                last = logits[:, -1, :].float()
                if banned is not None:
                    last = last.index_fill(1, banned, float("-inf"))
                next_id = choose_next(last, config, generator).view(1, 1)
            token = next_id.item()  # the one sync with the device a token
            if config.stop_at_eos and eos_id is not None and token == eos_id:
                return
            yield token
            logits, state = model(next_id, state)
