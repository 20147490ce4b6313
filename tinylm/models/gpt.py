"""A GPT-style decoder-only Transformer, laid out like GPT-2 so it exports to transformers exactly.

    ids (B, T) -> token + learned position embeddings (B, T, E) -> dropout
               -> `layers` pre-LayerNorm blocks:  x + attn(ln_1(x)),  x + mlp(ln_2(x))
               -> final LayerNorm -> head tied to the token embedding -> logits (B, T, V)

Attention is causal multi-head self-attention through F.scaled_dot_product_attention; the MLP is
Linear(E, 4E) -> GELU (tanh approximation, GPT-2's "gelu_new") -> Linear(4E, E). Every Linear has a bias
and LayerNorm eps is 1e-5, as in GPT-2, and the module names follow GPT-2's (transformer.h.N.attn.c_attn,
...), so tinylm/export.py only transposes weights.

The state carried between calls is a KV cache (keys and values of every layer for the positions so far),
so generation costs one position per new token. The positions are learned for 0..block_size-1 only, so the
context slides: when the cache holds block_size positions and another token comes, the last block_size // 2
tokens are re-encoded from position 0 into a fresh cache and the new token follows them. That costs
block_size // 2 positions once every block_size - block_size // 2 tokens, about one extra position per
token, and past the first block every token is predicted from block_size // 2 to block_size - 1 earlier
tokens.
A call with T > block_size and no state follows the same rule, so feeding a sequence in pieces with the
returned state always gives the logits of one full pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TinyLMError
from .base import LanguageModel


@dataclass
class GPTConfig:
    """Hyper-parameters of a GPT (the defaults are the gpt-cpu preset's model)."""

    vocab_size: int = 0
    """Number of token ids (set from the tokenizer)."""
    block_size: int = 128
    """Context length: learned positions 0..block_size-1. In a RunConfig it is the data's --block-size."""
    layers: int = 4
    """Number of Transformer blocks."""
    heads: int = 4
    """Attention heads per block; must divide `embed`."""
    embed: int = 128
    """Width of the residual stream (token and position embeddings)."""
    dropout: float = 0.1
    """Dropout on the embeddings, the attention weights and each residual branch."""

    def __post_init__(self) -> None:
        for name in ("block_size", "layers", "heads", "embed"):
            if getattr(self, name) < 1:
                raise TinyLMError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.embed % self.heads:
            raise TinyLMError(f"--embed {self.embed} must be a multiple of --heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise TinyLMError(f"--dropout must be in [0, 1), got {self.dropout}")


@dataclass
class KVCache:
    """What a GPT carries from one call to the next. It is updated in place by the call it is passed to
    (and returned), so use each state once, in order: generation does."""

    ids: torch.Tensor
    """(B, t): the tokens at positions 0..t-1, kept to re-encode the last half-block when the context
    slides."""
    keys: list[torch.Tensor | None]
    """Per layer (B, heads, capacity >= t, head size); positions 0..t-1 are filled."""
    values: list[torch.Tensor | None]
    """Like `keys`."""

    @property
    def length(self) -> int:
        return self.ids.size(1)


class CausalSelfAttention(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.heads, self.block_size, self.dropout = c.heads, c.block_size, c.dropout
        self.c_attn = nn.Linear(c.embed, 3 * c.embed)  # query, key, value of all heads in one matmul
        self.c_proj = nn.Linear(c.embed, c.embed)
        self.resid_dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache, layer: int) -> torch.Tensor:
        B, T, C = x.shape
        t = cache.length  # positions already in the cache; x holds positions t..t+T-1
        q, k, v = self.c_attn(x).split(C, dim=2)
        hs = C // self.heads
        q, k, v = (z.view(B, T, self.heads, hs).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
        dropout = self.dropout if self.training else 0.0
        if t == 0:  # a new sequence (always so in training): plain causal attention
            cache.keys[layer], cache.values[layer] = k, v
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:
            k, v = self._append(cache, layer, t, k, v)  # (B, nh, t+T, hs)
            # query i (position t+i) sees keys 0..t+i; a single new token sees them all, so needs no mask
            mask = None if T == 1 else torch.ones(T, t + T, dtype=torch.bool, device=x.device).tril(t)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))

    def _append(self, cache: KVCache, layer: int, t: int, k: torch.Tensor,
                v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, nh, T, hs) at positions t..t+T-1; return the keys and values of 0..t+T-1."""
        end = t + k.size(2)
        if cache.keys[layer].size(2) < end:
            # Grow once to the whole block, so the next tokens are written in place instead of
            # concatenated (a copy of the whole cache per token).
            for store in (cache.keys, cache.values):
                old = store[layer]
                store[layer] = old.new_empty(old.size(0), old.size(1), self.block_size, old.size(3))
                store[layer][:, :, :t] = old[:, :, :t]
        cache.keys[layer][:, :, t:end] = k
        cache.values[layer][:, :, t:end] = v
        return cache.keys[layer][:, :, :end], cache.values[layer][:, :, :end]


class MLP(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(c.embed, 4 * c.embed)
        self.c_proj = nn.Linear(4 * c.embed, c.embed)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.embed, eps=1e-5)
        self.attn = CausalSelfAttention(c)
        self.ln_2 = nn.LayerNorm(c.embed, eps=1e-5)
        self.mlp = MLP(c)

    def forward(self, x: torch.Tensor, cache: KVCache, layer: int) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(LanguageModel):
    """Decoder-only Transformer; the state is a KVCache (see the module docstring for the sliding rule)."""

    family = "gpt"

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        c = config
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(c.vocab_size, c.embed),  # token -> vector, also the output head (tied)
            "wpe": nn.Embedding(c.block_size, c.embed),  # learned positions 0..block_size-1
            "drop": nn.Dropout(c.dropout),
            "h": nn.ModuleList(Block(c) for _ in range(c.layers)),
            "ln_f": nn.LayerNorm(c.embed, eps=1e-5),
        })
        self.lm_head = nn.Linear(c.embed, c.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: one (V, E) matrix reads and writes tokens
        # GPT-2's initialisation: N(0, 0.02), zero biases, and the projections that add into the residual
        # stream scaled by 1/sqrt(2 * layers) so its variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                std = 0.02 / math.sqrt(2 * c.layers) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std)

    def describe(self) -> str:
        c = self.config
        return (f"gpt {c.layers} layers x {c.embed} wide, {c.heads} heads, block {c.block_size}, "
                f"dropout {c.dropout:g}")

    def forward(self, ids: torch.Tensor, state: KVCache | None = None) -> tuple[torch.Tensor, KVCache]:
        block = self.config.block_size
        cache = state if state is not None else KVCache(ids[:, :0], [None] * self.config.layers,
                                                        [None] * self.config.layers)
        hidden = []  # (B, n, E) pieces: one unless the context slides inside this call
        start = 0
        while start < ids.size(1):
            if cache.length == block:
                self._slide(cache)
            n = min(ids.size(1) - start, block - cache.length)
            hidden.append(self._extend(ids[:, start : start + n], cache))
            start += n
        x = hidden[0] if len(hidden) == 1 else torch.cat(hidden, dim=1)
        return self.lm_head(self.transformer.ln_f(x)), cache  # (B, T, V)

    def _extend(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Run `ids` (B, n) at the positions after the cache's; return the last block's output (B, n, E)."""
        t = cache.length
        positions = torch.arange(t, t + ids.size(1), device=ids.device)  # (n,)
        x = self.transformer.drop(self.transformer.wte(ids) + self.transformer.wpe(positions))  # (B, n, E)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, cache, layer)
        cache.ids = torch.cat([cache.ids, ids], dim=1)
        return x

    def _slide(self, cache: KVCache) -> None:
        """The cache is full: restart it from the last block_size // 2 tokens, re-encoded from position 0."""
        keep = cache.ids[:, cache.length - self.config.block_size // 2 :]  # (B, block_size // 2)
        cache.ids = cache.ids[:, :0]
        cache.keys = [None] * self.config.layers
        cache.values = [None] * self.config.layers
        if keep.size(1):
            self._extend(keep, cache)


FAMILY = ("gpt", GPTConfig, GPT)
MODEL_NAMES = {"gpt": {}}
