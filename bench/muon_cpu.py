"""Muon on this CPU: a small GPT's training step with Newton-Schulz in bf16 against fp32, measured in one run.

    python bench/muon_cpu.py                 # the CPU as it is
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 python bench/muon_cpu.py
                                             # as a CPU without native bf16 (see cpu_budget.py --sides avx2)

The model is cpu_budget.py's gpt-cpu-best (4 x 128, rotary, RMSNorm, QK-norm, ReLU², untied head, 803,840
parameters with 65 characters), batch 32 x 128, Muon 0.02 for the hidden matrices and AdamW 8e-3 for the rest,
trained in the precision tinylm picks here (bf16 autocast only with native bf16). Printed: tokens/s of full
steps (forward, loss, backward, optimizer) with the iterations in each dtype, the ratio against bf16 (torch.optim.
Muon's choice), the milliseconds of one step's iterations alone, and the dtype tinylm's optimizer picks here.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from tinylm.config import TrainConfig
from tinylm.machine.devices import cpu_capability, cpu_model, native_bf16_cpu
from tinylm.models import build_model, model_config
from tinylm.training.optim import build_optimizer, hidden_matrices, orthogonalize

VOCAB = 65
GPT = {"layers": 4, "heads": 4, "embed": 128, "block_size": 128, "positions": "rope", "norm": "rmsnorm",
       "qk_norm": True, "activation": "relu2", "tie_head": False, "zero_init_proj": True, "bias": False,
       "dropout": 0.0}


def step_speed(dtype: torch.dtype, batch: int, steps: int, bf16: bool) -> float:
    """Tokens/s of full training steps with Muon's iterations in `dtype`."""
    torch.manual_seed(0)
    model = build_model(model_config("gpt", vocab_size=VOCAB, **GPT)).train()
    optimizer = build_optimizer(model, TrainConfig(optimizer="muon", muon_lr=0.02, lr=8e-3, weight_decay=0.1))
    optimizer.ns_dtype = dtype
    ids = torch.randint(0, VOCAB, (batch, GPT["block_size"] + 1))
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = model(ids[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return batch * GPT["block_size"] * steps / (time.perf_counter() - start)


def iterations_ms(dtype: torch.dtype, repeats: int = 5) -> float:
    """Milliseconds of one step's Newton-Schulz iterations (5 each) over the model's hidden matrices."""
    matrices = [torch.randn_like(p) for p in hidden_matrices(build_model(model_config("gpt", vocab_size=VOCAB, **GPT)))]
    orthogonalize(matrices[0], 5, dtype)
    start = time.perf_counter()
    for _ in range(repeats):
        for g in matrices:
            orthogonalize(g, 5, dtype)
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=8)
    args = p.parse_args()
    bf16 = native_bf16_cpu()
    picked = build_optimizer(build_model(model_config("gpt", vocab_size=VOCAB, **GPT)),
                             TrainConfig(optimizer="muon")).ns_dtype
    print(f"{cpu_model()} ({cpu_capability()}), {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"training in {'bf16 autocast' if bf16 else 'fp32'}; tinylm's Newton-Schulz here: {str(picked)[6:]}")
    speeds = {dtype: step_speed(dtype, args.batch_size, args.steps, bf16) for dtype in (torch.bfloat16, torch.float32)}
    for dtype, speed in speeds.items():
        print(f"Newton-Schulz in {str(dtype)[6:]:<9} {speed:9,.0f} tokens/s ({speed / speeds[torch.bfloat16]:.2f}x)  "
              f"iterations alone: {iterations_ms(dtype):7.1f} ms a step")


if __name__ == "__main__":
    main()
