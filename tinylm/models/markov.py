"""Markov chain (n-gram) language models: the counting baseline every neural model should beat.

The next token after the last n-1 tokens h is predicted from counts of the training text, interpolated
with the lower orders down to a uniform distribution, so every token keeps a probability > 0 and every
distribution sums to 1 (the loss is a real cross-entropy, comparable with a neural model's):

    P_k(w | h) = (a_k(h, w) + g_k(h) * P_{k-1}(w | h')) / z_k(h)      h' = h without its oldest token
    P_0(w)     = 1 / V                                                 z_k(h) = sum_w a_k(h, w) + g_k(h)

- kneser-ney (interpolated, modified; Chen & Goodman 1998): a = c - D(c) with discounts D1, D2, D3+
  estimated per order from its count-of-counts, g = the mass taken by the discounts. Below the highest
  order, c counts continuations (after how many distinct tokens a k-gram appears), not occurrences.
- witten-bell: a = c, g = the number of distinct tokens seen after h.
A context never seen leaves the lower order's distribution unchanged (P_k = P_{k-1}).

Storage: order 1 is a dense table of V counts. The k-grams of order k >= 2 are a sorted table of keys
(prefix id * V + last token) with their counts, where a k-gram's id is its rank in its order's table (a
trie flattened into arrays); the entries that follow one context are contiguous. Lookups are
`searchsorted`, so memory grows with the n-grams seen, never with V^n (a 30k-word vocabulary is fine).

The table lengths depend on the training text, not on the config: loading takes them from the file
(after checking that keys and counts agree), while order and vocabulary fix every other tensor, which
load with the usual strict shape check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..errors import TinyLMError, check_choices, check_types
from .base import CountingModel, check_sizes

SMOOTHINGS = ("kneser-ney", "witten-bell")
MAX_ORDER = 16
# Kneser-Ney discounts for a text too small or too repetitive to estimate them from its count-of-counts.
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


@dataclass
class MarkovConfig:
    """Hyper-parameters of an n-gram language model."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"smoothing": SMOOTHINGS}

    vocab_size: int = 0
    """Number of token ids (set from the tokenizer)."""
    order: int = 6
    """n: the prediction looks at the last n-1 tokens (6 suits characters, 3 words)."""
    smoothing: str = "kneser-ney"
    """kneser-ney (interpolated, modified) or witten-bell."""

    def __post_init__(self) -> None:
        check_types(self)
        check_sizes(self)
        if not 1 <= self.order <= MAX_ORDER:
            raise TinyLMError(f"--order must be between 1 and {MAX_ORDER}, got {self.order}")
        check_choices(self)


def _discounts(counts: torch.Tensor) -> list[float]:
    """Modified Kneser-Ney discounts D1, D2, D3+ from the count-of-counts n1..n4 (Chen & Goodman)."""
    n1, n2, n3, n4 = (int((counts == r).sum()) for r in (1, 2, 3, 4))
    if 0 in (n1, n2, n3, n4):  # e.g. no n-gram seen twice: the formula degenerates (D1 = 1 takes everything)
        return list(FALLBACK_DISCOUNTS)
    y = n1 / (n1 + 2 * n2)
    estimates = [1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3]
    # A discount must be > 0 (unseen tokens need mass) and at most the count it applies to.
    return [d if 0 < d <= r else fallback
            for r, (d, fallback) in enumerate(zip(estimates, FALLBACK_DISCOUNTS), start=1)]


class MarkovLM(CountingModel):
    """An interpolated n-gram model; the state is the last n-1 tokens (-1 before the start of a text)."""

    family = "markov"

    def __init__(self, config: MarkovConfig):
        super().__init__(config)
        n, V = config.order, config.vocab_size
        self.register_buffer("counts1", torch.zeros(V, dtype=torch.long))
        for k in range(2, n + 1):
            self.register_buffer(f"keys{k}", torch.zeros(0, dtype=torch.long))
            self.register_buffer(f"counts{k}", torch.zeros(0, dtype=torch.long))
        # kneser-ney's D1, D2, D3+ of each order
        self.register_buffer("discounts", torch.zeros(n, 3, dtype=torch.float64))
        self._derive()

    def describe(self) -> str:
        return f"markov order {self.config.order}, {self.config.smoothing} smoothing"

    def num_parameters(self) -> int:
        """An n-gram model's parameters are its counts: one per n-gram stored, all orders together."""
        higher = sum(self._keys(k).numel() for k in range(2, self.config.order + 1))
        return int((self.counts1 > 0).sum()) + higher

    def _keys(self, k: int) -> torch.Tensor:
        return getattr(self, f"keys{k}")

    def _num_contexts(self, k: int) -> int:
        """Number of possible contexts of order k: the (k-1)-grams."""
        return self.config.vocab_size if k == 2 else self._keys(k - 1).numel()

    # -- counting ------------------------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, ids: torch.Tensor) -> None:
        """Count the n-grams of `ids` (1-D), replacing whatever the model counted before."""
        n, V = self.config.order, self.config.vocab_size
        ids = ids.flatten().long()
        if ids.numel() and not 0 <= int(ids.min()) <= int(ids.max()) < V:
            raise ValueError(f"token ids must be in [0, {V})")
        # grams[k-1][i]: id of the k-gram that starts at position i
        grams, counts = [ids], [torch.bincount(ids, minlength=V)]
        for k in range(2, n + 1):
            keys, inverse, count = torch.unique(grams[-1][:-1] * V + ids[k - 1:], return_inverse=True,
                                                return_counts=True)
            setattr(self, f"keys{k}", keys)
            grams.append(inverse)
            counts.append(count)
        if self.config.smoothing == "kneser-ney":
            for k in range(1, n):  # below the highest order: continuation counts
                longer = grams[k]  # ids of the (k+1)-grams by start position
                first = torch.zeros(self._keys(k + 1).numel(), dtype=torch.long, device=ids.device)
                first.scatter_(0, longer, torch.arange(longer.numel(), device=ids.device))  # a start of each
                # the k-gram after the first token of each distinct (k+1)-gram
                counts[k - 1] = torch.bincount(grams[k - 1][first + 1], minlength=counts[k - 1].numel())
            self.discounts = torch.tensor([_discounts(c) for c in counts], dtype=torch.float64,
                                          device=ids.device)
        for k, count in enumerate(counts, start=1):
            setattr(self, f"counts{k}", count)
        self._derive()

    def _smooth(self, k: int, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per entry of order k: its numerator a and its share of the back-off mass g."""
        c = counts.double()
        if self.config.smoothing == "witten-bell":
            return c, (c > 0).double()
        discount = self.discounts[k - 1][(c.clamp(1, 3) - 1).long()] * (c > 0)
        return c - discount, discount

    def _derive(self) -> None:
        """Per-context totals and offsets from the counts, kept beside them (recomputed, never saved)."""
        V = self.config.vocab_size
        a, g = self._smooth(1, self.counts1)
        z = float((a + g).sum())
        uniform = torch.full((V,), 1.0 / max(V, 1), dtype=torch.float64, device=self.counts1.device)
        self.register_buffer("prob1", (a + g.sum() * uniform) / z if z > 0 else uniform, persistent=False)
        for k in range(2, self.config.order + 1):
            keys, m = self._keys(k), self._num_contexts(k)
            parents = keys // V
            a, g = self._smooth(k, getattr(self, f"counts{k}"))
            zeros = torch.zeros(m, dtype=torch.float64, device=keys.device)
            starts = torch.zeros(m + 1, dtype=torch.long, device=keys.device)
            starts[1:] = torch.bincount(parents, minlength=m).cumsum(0)
            self.register_buffer(f"numer{k}", a, persistent=False)
            self.register_buffer(f"mass{k}", zeros.index_add(0, parents, g), persistent=False)
            self.register_buffer(f"total{k}", zeros.index_add(0, parents, a + g), persistent=False)
            self.register_buffer(f"start{k}", starts, persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # Size the count tables from the file when its keys and counts agree; anything else (another order
        # or vocabulary, a table cut short) still fails the strict shape check of the parent class.
        for k in range(2, self.config.order + 1):
            keys, counts = state_dict.get(f"{prefix}keys{k}"), state_dict.get(f"{prefix}counts{k}")
            if keys is not None and counts is not None and keys.dim() == 1 and keys.shape == counts.shape:
                for name in (f"keys{k}", f"counts{k}"):
                    setattr(self, name, torch.zeros(keys.shape, dtype=torch.long, device=self.counts1.device))
        errors_before = len(error_msgs)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if len(error_msgs) == errors_before:
            self._derive()

    # -- predicting ----------------------------------------------------------------------------------
    def _context_ids(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids of the j-grams `tokens` (P, j) in their order's table, and whether each was seen."""
        V = self.config.vocab_size
        found = tokens[:, 0] >= 0  # -1 stands before the start of the text
        h = tokens[:, 0].clamp_min(0)
        for i in range(1, tokens.size(1)):
            keys = self._keys(i + 1)
            if keys.numel() == 0:
                return h, torch.zeros_like(found)
            query = h * V + tokens[:, i]
            h = torch.searchsorted(keys, query).clamp_max(keys.numel() - 1)
            found &= keys[h] == query
        return h, found

    def _entries(self, k: int, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every stored entry of order k that follows one of the contexts `ctx` (R,): (owner, entry), where
        `owner` is the entry's index in `ctx` (the entries of one context are contiguous)."""
        starts = getattr(self, f"start{k}")
        first, lengths = starts[ctx], starts[ctx + 1] - starts[ctx]
        owner = torch.repeat_interleave(torch.arange(ctx.numel(), device=ctx.device), lengths)
        before = (lengths.cumsum(0) - lengths)[owner]  # entries of the earlier contexts
        entry = first[owner] + torch.arange(owner.numel(), device=ctx.device) - before
        return owner, entry

    def forward(self, ids: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        B, T = ids.shape
        n, V = self.config.order, self.config.vocab_size
        if state is None:
            state = ids.new_full((B, n - 1), -1)
        seq = torch.cat([state, ids], dim=1)  # (B, n-1+T)
        # The recursion P_k = (a_k + g_k P_{k-1}) / z_k, unrolled from the top order down:
        #   P_n = sum_k w_k / z_k * a_k + w_1 * P_1,   with w_n = 1 and w_{k-1} = w_k * g_k / z_k (per row),
        # so the dense (B*T, V) work is one product and each order only adds its sparse entries.
        weight = torch.ones(B * T, dtype=torch.float64, device=ids.device)  # w_k of every row
        sparse = []  # (order, rows, their contexts, w_k / z_k)
        if n > 1:
            # the n-1 tokens up to and including position t, for every t: (B*T, n-1)
            history = torch.stack([seq[:, i : i + T] for i in range(1, n)], dim=-1).reshape(B * T, n - 1)
            for k in range(n, 1, -1):
                h, found = self._context_ids(history[:, n - k:])  # the last k-1 tokens
                if not found.any():
                    continue
                total = getattr(self, f"total{k}")
                rows = (found & (total[h] > 0)).nonzero().squeeze(1)
                ctx = h[rows]
                sparse.append((k, rows, ctx, weight[rows] / total[ctx]))
                weight[rows] *= getattr(self, f"mass{k}")[ctx] / total[ctx]
        probs = weight[:, None] * self.prob1[None, :]  # (B*T, V)
        for k, rows, ctx, scale in sparse:
            owner, entry = self._entries(k, ctx)
            probs.index_put_((rows[owner], self._keys(k)[entry] % V),
                             scale[owner] * getattr(self, f"numer{k}")[entry], accumulate=True)
        # log-probabilities are logits whose softmax is the distribution itself
        return probs.log().float().view(B, T, V), seq[:, seq.size(1) - (n - 1):]


FAMILY = ("markov", MarkovConfig, MarkovLM)
MODEL_NAMES = {"markov": {}}
