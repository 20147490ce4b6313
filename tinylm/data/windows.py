"""Token streams cut into training examples.

Two shapes, both as (inputs, targets) pairs of equal length so one loss function serves every model:
- "every": windows of `block_size` tokens every `stride` tokens, a target at every position
  (the usual language-model setup);
- "last": the many-to-one form of the classic char-RNN exercise: windows of `maxlen` tokens every
  `step` tokens, the only target being the token that follows the window. Other positions hold
  IGNORE, which the loss skips.
"""

from __future__ import annotations

import copy
import mmap
from typing import Iterator

import numpy as np
import torch

from ..errors import TinyLMError
from .sources import validation_cut

IGNORE = -100  # targets with this value are left out of the loss (F.cross_entropy's ignore_index)


def release_pages(ids) -> None:
    """Unmap the pages a batch read from a read-only memory-mapped token file. They stay in the page cache (a
    later batch maps them again at no cost), but no longer count in this process's RSS, which would otherwise
    climb towards the file's size over an epoch (the kernel maps pages around each one read, too)."""
    mapped = getattr(ids, "_mmap", None)
    if getattr(ids, "mode", None) == "r" and mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED)


def split_text(text: str, val_fraction: float) -> tuple[str, str]:
    """The first (1 - val_fraction) of the characters train, the rest validate (the char-rnn convention)."""
    cut = validation_cut(len(text), val_fraction)  # prepare's streams cut there too
    return text[:cut], text[cut:]


class TokenWindows:
    """Windows over a 1-D tensor of token ids; batches are gathered with one indexing operation.

    The ids may also be a numpy array, such as the memory map of a prepared token file: a batch then reads
    only its own windows and only the batch becomes an int64 tensor, so memory does not grow with the corpus.
    """

    def __init__(self, ids: torch.Tensor | np.ndarray, block_size: int, stride: int, target: str = "every"):
        if target not in ("every", "last"):
            raise ValueError(f"target must be 'every' or 'last', not {target!r}")
        if block_size < 1 or stride < 1:
            raise TinyLMError("--block-size and --stride must be positive")
        n = len(ids)
        if n < block_size + 1:
            raise TinyLMError(
                f"the training text has {n} tokens, fewer than one window needs ({block_size + 1}); "
                f"use a smaller --block-size or more text"
            )
        self.ids = ids.long() if isinstance(ids, torch.Tensor) else ids
        self.block_size = block_size
        self.target = target
        self.starts = torch.arange(0, n - block_size, stride)
        self._offsets = torch.arange(block_size)

    def __len__(self) -> int:
        return self.starts.numel()

    @property
    def num_tokens(self) -> int:
        return len(self.ids)

    @property
    def token_stream(self) -> torch.Tensor:
        """All training tokens in order (what a counting model fits on; read whole from a token file)."""
        if isinstance(self.ids, torch.Tensor):
            return self.ids
        return torch.from_numpy(np.asarray(self.ids, dtype=np.int64))

    def _take(self, index: torch.Tensor) -> torch.Tensor:
        """The ids at `index` as an int64 tensor (from a numpy array, only these positions are read)."""
        if isinstance(self.ids, torch.Tensor):
            return self.ids[index]
        batch = torch.from_numpy(self.ids[index.numpy()].astype(np.int64))
        release_pages(self.ids)
        return batch

    def gather(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = starts[:, None] + self._offsets  # (B, T)
        x, y = self._take(index), self._take(index + 1)
        if self.target == "last":
            y = y.clone()
            y[:, :-1] = IGNORE
        return x, y

    def num_batches(self, batch_size: int, world: int = 1) -> int:
        return -(-(len(self) // world) // batch_size)

    def to(self, device: torch.device | str) -> "TokenWindows":
        """These windows with the token ids on `device` (a GPU): batches are then gathered there, with no copy
        from the host per step. The batch order is still drawn on the CPU, so it is the same as before."""
        moved = copy.copy(self)
        moved.ids = self.token_stream.to(device)  # int64, also from a token file's memory map
        moved.starts, moved._offsets = self.starts.to(device), self._offsets.to(device)
        return moved

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

    # -- stateful training (truncated backpropagation through time) -------------------------------------
    def num_stream_batches(self, batch_size: int, world: int = 1) -> int:
        """Batches per epoch of `stream_epoch` (the same in every epoch, whatever its random offset)."""
        return (self.num_tokens - self.block_size) // (batch_size * world) // self.block_size

    def stream_epoch(self, batch_size: int, seed: int, skip: int = 0, rank: int = 0,
                     world: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of one epoch for stateful training: from an offset below block_size drawn from `seed`, the
        text is cut into batch_size x world contiguous streams, and batch k holds the k-th block of each of
        this rank's streams, so row s continues row s of the batch before and a recurrent state carried from
        batch to batch has read everything before it. `skip` replays a resumed epoch."""
        generator = torch.Generator().manual_seed(seed)
        offset = int(torch.randint(self.block_size, (1,), generator=generator))
        streams = batch_size * world
        length = (self.num_tokens - self.block_size) // streams  # tokens per stream, whatever the offset
        starts = offset + torch.arange(rank, streams, world)[:, None] * length  # (B, 1): this rank's streams
        offsets = torch.arange(self.block_size)[None, :]
        for k in range(skip, self.num_stream_batches(batch_size, world)):
            index = starts + k * self.block_size + offsets  # (B, T)
            index = index.to(self.ids.device) if isinstance(self.ids, torch.Tensor) else index
            yield self._take(index), self._take(index + 1)


def stream_batches(ids, streams: int, chunk: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches that score every token of `ids` exactly once as `streams` long contiguous segments, read
    `chunk` tokens at a time: row s of each batch continues row s of the one before, so a model that
    carries its state (a recurrent one) keeps its whole past instead of restarting every window.

    `ids` may be a tensor or a numpy array / memmap; only each batch is materialised. Positions past a
    segment's end (the last chunk) hold IGNORE targets.
    """
    n = len(ids)
    if n < 2:
        raise TinyLMError("the evaluation text has fewer than 2 tokens: nothing to score")
    streams = max(1, min(streams, n - 1))
    length = -(-(n - 1) // streams)  # targets per stream
    seg_starts = torch.arange(streams)[:, None] * length  # (S, 1)
    for c in range(0, length, chunk):
        offsets = torch.arange(c, min(c + chunk, length))[None, :]  # (1, T)
        index = seg_starts + offsets  # (S, T) positions of the inputs
        valid = index < n - 1  # the last segment may be shorter
        x_index, y_index = index.clamp(max=n - 2), (index + 1).clamp(max=n - 1)
        if isinstance(ids, torch.Tensor):
            x, y = ids[x_index].long(), ids[y_index].long()
        else:  # numpy (memory-mapped) token file: read just these positions
            x = torch.from_numpy(ids[x_index.numpy()].astype("int64"))
            y = torch.from_numpy(ids[y_index.numpy()].astype("int64"))
            release_pages(ids)
        yield x, y.masked_fill(~valid, IGNORE)


def eval_batches(
    ids: torch.Tensor | np.ndarray, block_size: int, target: str, batch_size: int, stride: int = 1
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches that score the tokens of `ids` (the whole split, not a sample).

    "every": non-overlapping windows, the last one padded with IGNORE targets: every token once.
    "last": a window ending before every `stride`-th token from position `block_size` on, as in training (the
    training stride: the same measure as stride 1, a third of the windows for the exercise's step 3, so that an
    evaluation never costs more than the epoch of training before it).
    `ids` may be a numpy array (a memory-mapped token file): the same batches are then read one at a time.
    """
    n = len(ids)
    if n < 2:
        raise TinyLMError("the evaluation text has fewer than 2 tokens: nothing to score")
    if target == "every" and not isinstance(ids, torch.Tensor):
        yield from _array_eval_batches(ids, block_size, batch_size)
    elif target == "every":
        ids = ids.long()
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
        windows = TokenWindows(ids, block_size, stride, "last")
        for i in range(0, len(windows), batch_size):
            yield windows.gather(windows.starts[i : i + batch_size])


def _array_eval_batches(ids: np.ndarray, block_size: int,
                        batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """eval_batches' "every" batches from a numpy array, reading only each batch's tokens (and one more)."""
    n = len(ids)
    n_windows = -(-(n - 1) // block_size)
    for i in range(0, n_windows, batch_size):
        rows = min(batch_size, n_windows - i)
        width = rows * block_size
        chunk = torch.from_numpy(np.asarray(ids[i * block_size : min(i * block_size + width + 1, n)], dtype=np.int64))
        release_pages(ids)
        x = torch.zeros(width, dtype=torch.long)
        y = torch.full((width,), IGNORE, dtype=torch.long)
        x[: min(chunk.numel(), width)] = chunk[:width]
        y[: chunk.numel() - 1] = chunk[1:]
        yield x.view(rows, block_size), y.view(rows, block_size)
