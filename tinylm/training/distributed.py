"""Multi-process training with PyTorch DDP, launched by torchrun:

    torchrun --nproc_per_node 4 -m tinylm train --model gpt --out runs/ddp ...

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; this module joins the process group (NCCL on GPUs, gloo on
CPUs). Every rank reads its own shard of each epoch's batches (windows.py / lines.py `epoch(rank, world)`),
DDP averages the gradients, and only rank 0 prints, logs and writes files. Without torchrun, world is 1
and nothing here does anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the only process that prints and writes."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast_float(self, value: float, device: torch.device) -> float:
        """Rank 0's value on every rank (decisions such as early stopping must agree)."""
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(t, src=0)
        return float(t.item())

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if it is True on one (e.g. a time budget reached)."""
        if not self.active:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        if not self.active:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def in_sync(self, model: torch.nn.Module, device: torch.device) -> bool:
        """Whether every rank holds the same weights (a checksum compared across ranks)."""
        if not self.active:
            return True
        checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().view(1).to(device)
        low, high = checksum.clone(), checksum.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        return bool(torch.isclose(low, high, rtol=1e-9, atol=1e-9).item())


def setup(device_name: str) -> Distributed:
    """Join the torchrun process group if there is one (idempotent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    ctx = Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_name != "cpu"
        if use_cuda:
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return ctx


def device_for(ctx: Distributed, device: torch.device) -> torch.device:
    """Each rank on its own GPU."""
    if ctx.active and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device
