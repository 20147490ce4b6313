"""Token streams cut into training examples.

Two shapes, both as (inputs, targets) pairs of equal length so one loss function serves every model:
- "every": windows of `block_size` tokens every `stride` tokens, a target at every position
  (the usual language-model setup);
- "last": the many-to-one form of the classic char-RNN exercise: windows of `maxlen` tokens every
  `step` tokens, the only target being the token that follows the window. Other positions hold
  IGNORE, which the loss skips.
"""

from __future__ import annotations

from typing import Iterator

import torch

from ..errors import TinyLMError

IGNORE = -100  # targets with this value are left out of the loss (F.cross_entropy's ignore_index)


def split_text(text: str, val_fraction: float) -> tuple[str, str]:
    """The first (1 - val_fraction) of the characters train, the rest validate (the char-rnn convention)."""
    if not 0.0 <= val_fraction < 1.0:
        raise TinyLMError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    cut = int(len(text) * (1.0 - val_fraction))
    return text[:cut], text[cut:]


class TokenWindows:
    """Windows over a 1-D tensor of token ids; batches are gathered with one indexing operation."""

    def __init__(self, ids: torch.Tensor, block_size: int, stride: int, target: str = "every"):
        if target not in ("every", "last"):
            raise ValueError(f"target must be 'every' or 'last', not {target!r}")
        if block_size < 1 or stride < 1:
            raise TinyLMError("--block-size and --stride must be positive")
        n = ids.numel()
        if n < block_size + 1:
            raise TinyLMError(
                f"the training text has {n} tokens, fewer than one window needs ({block_size + 1}); "
                f"use a smaller --block-size or more text"
            )
        self.ids = ids.long()
        self.block_size = block_size
        self.target = target
        self.starts = torch.arange(0, n - block_size, stride)
        self._offsets = torch.arange(block_size)

    def __len__(self) -> int:
        return self.starts.numel()

    @property
    def num_tokens(self) -> int:
        return self.ids.numel()

    @property
    def token_stream(self) -> torch.Tensor:
        """All training tokens in order (what a counting model fits on)."""
        return self.ids

    def gather(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = starts[:, None] + self._offsets  # (B, T)
        x, y = self.ids[index], self.ids[index + 1]
        if self.target == "last":
            y = y.clone()
            y[:, :-1] = IGNORE
        return x, y

    def num_batches(self, batch_size: int, world: int = 1) -> int:
        return -(-(len(self) // world) // batch_size)

    def epoch(self, batch_size: int, seed: int, skip: int = 0, rank: int = 0,
              world: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled batches of one epoch. The order depends only on `seed`, so a resumed run can replay it
        and skip the `skip` batches it already trained on. With several processes, rank r takes every
        world-th window of the same order (each rank the same number of batches)."""
        generator = torch.Generator().manual_seed(seed)
        order = self.starts[torch.randperm(len(self), generator=generator)]
        order = order[: len(order) // world * world][rank::world]
        for i in range(skip * batch_size, len(order), batch_size):
            yield self.gather(order[i : i + batch_size])


def eval_batches(
    ids: torch.Tensor, block_size: int, target: str, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches that score every token of `ids` exactly once (the whole split, not a sample).

    "every": non-overlapping windows, the last one padded with IGNORE targets.
    "last": a window ending before each token from position `block_size` on (stride 1), as in training.
    """
    ids = ids.long()
    n = ids.numel()
    if n < 2:
        raise TinyLMError("the evaluation text has fewer than 2 tokens: nothing to score")
    if target == "every":
        n_windows = -(-(n - 1) // block_size)
        padded_len = n_windows * block_size + 1
        x_all = torch.zeros(padded_len, dtype=torch.long)
        y_all = torch.full((padded_len,), IGNORE, dtype=torch.long)
        x_all[:n] = ids
        y_all[: n - 1] = ids[1:]
        x_all = x_all[:-1].view(n_windows, block_size)
        y_all = y_all[:-1].view(n_windows, block_size)
        for i in range(0, n_windows, batch_size):
            yield x_all[i : i + batch_size], y_all[i : i + batch_size]
    else:
        if n <= block_size:
            raise TinyLMError(f"the evaluation text has {n} tokens, not more than the window ({block_size})")
        windows = TokenWindows(ids, block_size, 1, "last")
        for i in range(0, len(windows), batch_size):
            yield windows.gather(windows.starts[i : i + batch_size])
