"""A GPT-style decoder-only Transformer. By default it is laid out like GPT-2, so it exports to transformers exactly:

    ids (B, T) -> token + learned position embeddings (B, T, E) -> dropout
               -> `layers` pre-LayerNorm blocks:  x + attn(ln_1(x)),  x + mlp(ln_2(x))
               -> final LayerNorm -> head tied to the token embedding -> logits (B, T, V)

Attention is causal multi-head self-attention through F.scaled_dot_product_attention; the MLP is
Linear(E, 4E) -> GELU (tanh approximation, GPT-2's "gelu_new") -> Linear(4E, E). Every Linear has a bias
and LayerNorm eps is 1e-5, as in GPT-2, and the module names follow GPT-2's (transformer.h.N.attn.c_attn,
...), so tinylm/publishing/export.py only transposes weights.

Modern options (GPTConfig fields, all off by default; the gpu-fast preset turns them all on). Together, with
Muon (training/optim.py), they are what took an experimental trainer from validation loss 1.561 to 1.486 at
the same budget on Tiny Shakespeare (figures from the Performance issue); such a model does not export to
GPT-2:
- positions="rope": rotary embeddings instead of learned positions: each head's queries and keys are
  rotated by angles proportional to their position, so attention scores depend on relative offsets only;
- norm="rmsnorm": RMSNorm without weights (F.rms_norm) instead of LayerNorm;
- qk_norm: each head's queries and keys RMS-normalised before attention, which bounds the attention logits
  so larger learning rates stay stable;
- activation="relu2": ReLU(x)^2 in the MLP instead of GELU;
- tie_head=False: an output head of its own instead of the token embedding;
- zero_init_proj: the projections that add into the residual stream (and an untied head) start at zero,
  so every block starts as the identity and the first steps are not noise;
- bias=False: no biases in the Linear layers and LayerNorms.

The state carried between calls is a KV cache (keys and values of every layer for the positions so far),
so generation costs one position per new token. The positions are learned for 0..block_size-1 only, so the
context slides: when the cache holds block_size positions and another token comes, the last block_size // 2
tokens are re-encoded from position 0 into a fresh cache and the new token follows them. That costs
block_size // 2 positions once every block_size - block_size // 2 tokens, about one extra position per
token, and past the first block every token is predicted from block_size // 2 to block_size - 1 earlier
tokens. Rotary positions follow the same rule: cached keys are rotated for their position in the cache,
and the slide re-encodes from position 0.
A call with T > block_size and no state follows the same rule, so feeding a sequence in pieces with the
returned state always gives the logits of one full pass. (Generation cuts a prompt longer than the block to
its last block_size tokens first: `context_window`.)

Generation's step (one new token with a cache, in eval mode, no autograd) takes a flat path, `_decode_step`:
at batch 1 the time per token on a CPU went mostly to Python and the dispatch of ~600 small tensor operations,
not to arithmetic. The step writes the new key and value into the cache in place (allocated once for the whole
block), runs attention for the single query with no mask, calls the layers through .forward (no module call
machinery) and adds into the residual stream in place. An inference copy in bf16 or int8 (machine/fast_inference.py)
also keeps its cache in bf16 and hands q, k, v and the MLP's hidden layer on in bf16 (its products round
their inputs to bf16 anyway): the gpt-gpu preset's model generates ~15% faster than with the previous flat
step on a CPU without native bf16 (bench/generation_speed.py). Same result as the general path, within float
rounding (tests/test_models_gpt.py compares them for every option; tests/test_inference.py the copies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TinyLMError, check_choices, check_types
from .base import LanguageModel, check_sizes


@dataclass
class GPTConfig:
    """Hyper-parameters of a GPT (the defaults are the gpt-cpu preset's model)."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "positions": ("learned", "rope"), "norm": ("layernorm", "rmsnorm"), "activation": ("gelu", "relu2")}

    vocab_size: int = 0
    """Number of token ids (set from the tokenizer)."""
    block_size: int = 128
    """Context length: positions 0..block_size-1. In a RunConfig it is the data's --block-size."""
    layers: int = 4
    """Number of Transformer blocks."""
    heads: int = 4
    """Attention heads per block; must divide `embed`."""
    embed: int = 128
    """Width of the residual stream (token and position embeddings)."""
    dropout: float = 0.1
    """Dropout on the embeddings, the attention weights and each residual branch."""
    positions: str = "learned"
    """learned (GPT-2: a table of block_size vectors added to the tokens) or rope (rotary embeddings)."""
    norm: str = "layernorm"
    """layernorm (GPT-2) or rmsnorm (weightless RMSNorm)."""
    qk_norm: bool = False
    """RMS-normalise each head's queries and keys before attention."""
    activation: str = "gelu"
    """gelu (tanh approximation, GPT-2) or relu2 (ReLU squared) in the MLP."""
    tie_head: bool = True
    """The output head is the token embedding matrix (GPT-2); False: a head of its own."""
    zero_init_proj: bool = False
    """Start the residual output projections, and the head when untied, at zero."""
    bias: bool = True
    """Biases in the Linear layers and LayerNorms (GPT-2)."""

    def __post_init__(self) -> None:
        check_types(self)
        check_sizes(self)
        if self.embed % self.heads:
            raise TinyLMError(f"--embed {self.embed} must be a multiple of --heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise TinyLMError(f"--dropout must be in [0, 1), got {self.dropout}")
        check_choices(self)
        if self.positions == "rope" and (self.embed // self.heads) % 2:
            raise TinyLMError(f"--positions rope needs an even head size; --embed {self.embed} / --heads "
                              f"{self.heads} is {self.embed // self.heads}")

    def gpt2_incompatibilities(self) -> list[str]:
        """The options that GPT-2 (and so an export to transformers' GPT2LMHeadModel) cannot represent."""
        found = [f"{name}={getattr(self, name)}" for name, gpt2 in (
            ("positions", "learned"), ("norm", "layernorm"), ("activation", "gelu")) if getattr(self, name) != gpt2]
        if self.qk_norm:
            found.append("qk_norm")
        if not self.tie_head:
            found.append("an untied head")
        if not self.bias:
            found.append("no biases")
        return found


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


def rotary_tables(head_size: int, positions: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (positions, head_size // 2) of the rotary angles: position p turns the pair of features
    (i, i + head_size // 2) by p * base ** (-2i / head_size), fast for the first pairs, slowly for the last."""
    inverse_frequencies = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
    angles = torch.arange(positions, dtype=torch.float32)[:, None] * inverse_frequencies[None, :]
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, nh, T, hs) with each feature pair (i, i + hs // 2) turned by the angles of its position (T rows
    of cos, sin); in fp32, then back to x's dtype. Since q_m . k_n then depends on m - n only, attention sees
    relative positions."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.heads, self.block_size, self.dropout, self.qk_norm = c.heads, c.block_size, c.dropout, c.qk_norm
        self.c_attn = nn.Linear(c.embed, 3 * c.embed, bias=c.bias)  # query, key, value of all heads in one matmul
        self.c_proj = nn.Linear(c.embed, c.embed, bias=c.bias)
        self.resid_dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache, layer: int,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        B, T, C = x.shape
        t = cache.length  # positions already in the cache; x holds positions t..t+T-1
        hs = C // self.heads
        # one view and one permute instead of split + 3 x (view, transpose): (3, B, nh, T, hs)
        q, k, v = self.c_attn(x).view(B, T, 3, self.heads, hs).permute(2, 0, 3, 1, 4).unbind(0)
        if self.qk_norm:  # autocast may run the norm in fp32: back to v's dtype, as attention needs
            q, k = (F.rms_norm(z, (hs,)).type_as(v) for z in (q, k))
        if rotary is not None:  # the cos, sin rows of positions t..t+T-1: cached keys keep their rotation
            q, k = rotate(q, *rotary), rotate(k, *rotary)
        dropout = self.dropout if self.training else 0.0
        if t == 0:  # a new sequence (always so in training): plain causal attention
            cache.keys[layer], cache.values[layer] = k, v
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:
            k, v = self._append(cache, layer, t, k, v)  # (B, nh, t+T, hs)
            # query i (position t+i) sees keys 0..t+i; a single new token sees them all, so needs no mask
            mask = None if T == 1 else torch.ones(T, t + T, dtype=torch.bool, device=x.device).tril(t)
            # (an inference copy's generation step may have stored the cache in bf16: q meets it there)
            y = F.scaled_dot_product_attention(q.type_as(k), k, v, attn_mask=mask, dropout_p=dropout).type_as(q)
        y = self.c_proj(y.transpose(1, 2).reshape(B, T, C))  # heads side by side again (no copy at T = 1)
        return self.resid_dropout(y) if self.training else y  # eval: no module call for a no-op

    def _append(self, cache: KVCache, layer: int, t: int, k: torch.Tensor,
                v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, nh, T, hs) at positions t..t+T-1; return the keys and values of 0..t+T-1."""
        end = t + k.size(2)
        reserve_block(cache, layer, self.block_size)
        cache.keys[layer][:, :, t:end] = k
        cache.values[layer][:, :, t:end] = v
        return cache.keys[layer][:, :, :end], cache.values[layer][:, :, :end]


def reserve_block(cache: KVCache, layer: int, block_size: int, dtype: torch.dtype | None = None) -> None:
    """Grow the layer's keys and values to the whole block once, so that later tokens are written in place
    instead of concatenated (a copy of the whole cache per token); in `dtype` when given."""
    for store in (cache.keys, cache.values):
        old = store[layer]
        if old.size(2) < block_size or (dtype is not None and old.dtype != dtype):
            store[layer] = old.new_empty(old.size(0), old.size(1), block_size, old.size(3), dtype=dtype)
            store[layer][:, :, : cache.length] = old[:, :, : cache.length]


def add_linear(residual: torch.Tensor, linear: nn.Module, x: torch.Tensor) -> None:
    """residual += linear(x), in place (generation's step). A layer of an inference copy (tinylm.machine.fast_inference)
    has an `add_into` that does it in its own precision with fewer operations. (Looked up on the class: a
    missing attribute of a module instance costs an exception in nn.Module.__getattr__.)"""
    add_into = getattr(type(linear), "add_into", None)
    if add_into is None:
        residual.add_(linear.forward(x))
    else:
        add_into(linear, residual, x)


def hidden_linear(linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """linear(x) for a hidden layer whose activation feeds another Linear (generation's step): an inference
    copy's layer returns it in the precision it computes in (`forward_hidden`), so the next one needs no cast."""
    forward_hidden = getattr(type(linear), "forward_hidden", None)
    return linear.forward(x) if forward_hidden is None else forward_hidden(linear, x)


class MLP(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(c.embed, 4 * c.embed, bias=c.bias)
        self.c_proj = nn.Linear(4 * c.embed, c.embed, bias=c.bias)
        self.dropout = nn.Dropout(c.dropout)
        self.relu2 = c.activation == "relu2"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        h = self.c_proj(F.relu(h).square() if self.relu2 else F.gelu(h, approximate="tanh"))
        return self.dropout(h) if self.training else h


def norm(c: GPTConfig) -> nn.Module:
    """GPT-2's LayerNorm, or an RMSNorm without weights (x / rms(x): nothing to learn, one kernel less)."""
    if c.norm == "rmsnorm":
        return nn.RMSNorm(c.embed, elementwise_affine=False)
    return nn.LayerNorm(c.embed, eps=1e-5, bias=c.bias)


class Block(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln_1 = norm(c)
        self.attn = CausalSelfAttention(c)
        self.ln_2 = norm(c)
        self.mlp = MLP(c)

    def forward(self, x: torch.Tensor, cache: KVCache, layer: int,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, rotary)
        return x + self.mlp(self.ln_2(x))


class GPT(LanguageModel):
    """Decoder-only Transformer; the state is a KVCache (see the module docstring for the sliding rule)."""

    family = "gpt"
    exports_to_transformers = True  # as GPT-2 (tinylm/publishing/export.py)
    kv_cache_dtype: torch.dtype | None = None  # the model's own; an inference copy may set bf16

    def output_head(self) -> nn.Module:
        return self.lm_head

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        c = config
        modules = {"wte": nn.Embedding(c.vocab_size, c.embed)}  # token -> vector (and the head, when tied)
        if c.positions == "learned":
            modules["wpe"] = nn.Embedding(c.block_size, c.embed)  # learned positions 0..block_size-1
        else:  # rotary: fixed angles, not weights (a non-persistent buffer is not saved with them)
            cos, sin = rotary_tables(c.embed // c.heads, c.block_size)
            self.register_buffer("rotary_cos", cos, persistent=False)
            self.register_buffer("rotary_sin", sin, persistent=False)
        self.transformer = nn.ModuleDict({
            **modules,
            "drop": nn.Dropout(c.dropout),
            "h": nn.ModuleList(Block(c) for _ in range(c.layers)),
            "ln_f": norm(c),
        })
        self.lm_head = nn.Linear(c.embed, c.vocab_size, bias=False)
        if c.tie_head:
            self.lm_head.weight = self.transformer.wte.weight  # tied: one (V, E) matrix reads and writes tokens
        # GPT-2's initialisation: N(0, 0.02), zero biases, and the projections that add into the residual
        # stream scaled by 1/sqrt(2 * layers) so its variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                std = 0.02 / math.sqrt(2 * c.layers) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std)
        if c.zero_init_proj:  # each block starts as the identity, and an untied head predicts uniformly
            for block in self.transformer.h:
                nn.init.zeros_(block.attn.c_proj.weight)
                nn.init.zeros_(block.mlp.c_proj.weight)
            if not c.tie_head:
                nn.init.zeros_(self.lm_head.weight)

    def describe(self) -> str:
        c = self.config
        options = [option for option, on in (
            ("rope", c.positions == "rope"), ("rmsnorm", c.norm == "rmsnorm"), ("qk-norm", c.qk_norm),
            ("relu2", c.activation == "relu2"), ("untied head", not c.tie_head),
            ("zero-init projections", c.zero_init_proj), ("no biases", not c.bias)) if on]
        return (f"gpt {c.layers} layers x {c.embed} wide, {c.heads} heads, block {c.block_size}, "
                f"dropout {c.dropout:g}" + "".join(f", {option}" for option in options))

    @property
    def context_window(self) -> int:
        """The most tokens a prediction can see: generation cuts longer prompts to their last ones."""
        return self.config.block_size

    def forward(self, ids: torch.Tensor, state: KVCache | None = None) -> tuple[torch.Tensor, KVCache]:
        block = self.config.block_size
        # the flat step works in place, so only where no gradient is recorded (generation: no_grad, inference_mode)
        if state is not None and ids.size(1) == 1 and not self.training and not torch.is_grad_enabled():
            if state.length == block:
                self._slide(state)
            if state.length:  # (empty only after sliding a block of 1)
                return self._decode_step(ids, state), state
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
        t, n = cache.length, ids.size(1)
        rotary = None
        if "wpe" in self.transformer:
            # the rows of positions t..t+n-1: a slice, not arange + an embedding lookup
            x = self.transformer.wte(ids) + self.transformer.wpe.weight[t : t + n]  # (B, n, E)
        else:
            x = self.transformer.wte(ids)
            rotary = self.rotary_cos[t : t + n], self.rotary_sin[t : t + n]  # (n, head size // 2) each
        if self.training:
            x = self.transformer.drop(x)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, cache, layer, rotary)
        cache.ids = torch.cat([cache.ids, ids], dim=1)
        return x

    def _decode_step(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Generation's step, flat: ids (B, 1) at position t = cache.length < block_size -> logits (B, 1, V).
        The same computation as _extend for one token in eval mode, in fewer operations (module docstring):
        layers are called through .forward (no module call machinery), the residual stream is updated in place,
        and an inference copy's Linear layers (machine/fast_inference.py) add into it and hand the MLP's hidden layer on
        in their own precision. Runs without autograd only (forward checks)."""
        c, t, B = self.config, cache.length, ids.size(0)
        heads, head_size = c.heads, c.embed // c.heads
        # An inference copy may keep its cache in bf16 (fast_inference.py decides: where bf16 is native, attention
        # then reads half the bytes, 1.2 MB a token at mid-block for gpt-gpu's model).
        kv_dtype = self.kv_cache_dtype
        if cache.keys[0].size(2) < c.block_size or (kv_dtype is not None and cache.keys[0].dtype != kv_dtype):
            for layer in range(c.layers):  # once per sequence (and slide): room for the whole block
                reserve_block(cache, layer, c.block_size, kv_dtype)
        transformer = self.transformer
        x = transformer.wte.forward(ids[:, 0])  # (B, E), a new tensor: the residual stream, updated in place
        if c.positions == "learned":
            x.add_(transformer.wpe.weight[t])
        else:
            cos, sin = self.rotary_cos[t], self.rotary_sin[t]  # (head size // 2,): broadcast over B and heads
        for block, keys, values in zip(transformer.h, cache.keys, cache.values):  # keys (B, nh, block, hs)
            attn, mlp = block.attn, block.mlp
            # in an inference copy q, k, v come out in bf16, the cache's dtype: no cast before the writes
            qkv = hidden_linear(attn.c_attn, block.ln_1.forward(x))
            q, k, v = qkv.view(B, 3, heads, head_size).unbind(1)  # (B, nh, hs) each
            if c.qk_norm:
                q, k = F.rms_norm(q, (head_size,)).type_as(v), F.rms_norm(k, (head_size,)).type_as(v)
            if c.positions == "rope":
                q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            keys.select(2, t).copy_(k)  # in place: no indexing machinery, no new cache
            values.select(2, t).copy_(v)
            # the single query attends to positions 0..t: no mask (SDPA beat two matmuls and a softmax, 1.4x)
            y = F.scaled_dot_product_attention(q.unsqueeze(2).type_as(keys), keys.narrow(2, 0, t + 1),
                                               values.narrow(2, 0, t + 1))
            add_linear(x, attn.c_proj, y.view(B, c.embed))  # (B, nh, 1, hs) -> heads side by side (B, E)
            hidden = hidden_linear(mlp.c_fc, block.ln_2.forward(x))
            hidden = F.relu(hidden).square_() if mlp.relu2 else F.gelu(hidden, approximate="tanh")
            add_linear(x, mlp.c_proj, hidden)
        cache.ids = torch.cat([cache.ids, ids], dim=1)
        return self.lm_head.forward(transformer.ln_f.forward(x)).unsqueeze(1)

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
