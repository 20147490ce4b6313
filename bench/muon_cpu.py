"""Muon on this CPU: a small model's training step with Newton-Schulz in bf16, in fp32, and in fp32 in its Gram
form, measured in one run.

    python bench/muon_cpu.py                 # the GPT on the CPU as it is
    python bench/muon_cpu.py --model lstm    # cpu-best's LSTM (its recurrent weights are 4 h x h: the Gram form)
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 python bench/muon_cpu.py
                                             # as a CPU without native bf16 (see cpu_budget.py --sides avx2)

Models: `gpt`, cpu_budget.py's gpt-cpu-best (4 x 128, rotary, RMSNorm, QK-norm, ReLU², untied head, 803,840
parameters with 65 characters), batch 32 x 128, Muon 0.02 and AdamW 8e-3; `lstm`, cpu-best's (1 x 384, embed
128, 824,388 parameters), batch 32 x 64, Muon 0.04 and AdamW 1.6e-2. Each trains in the precision tinylm picks
here (bf16 autocast only with native bf16). Printed per variant of the iterations (bf16 as torch.optim.Muon;
fp32 direct; fp32 in the Gram form tinylm uses for a matrix at least twice as long as wide): tokens/s of full
steps (forward, loss, backward, optimizer), the ratio against bf16, the milliseconds of one step's iterations
alone, and which variant tinylm's optimizer picks here.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from tinylm.config import TrainConfig
from tinylm.machine.devices import cpu_capability, cpu_model, native_bf16_cpu
from tinylm.models import build_model, model_config
from tinylm.training import optim
from tinylm.training.optim import build_optimizer, hidden_matrices, orthogonalize

VOCAB = 65
MODELS = {
    "gpt": ({"name": "gpt", "layers": 4, "heads": 4, "embed": 128, "block_size": 128, "positions": "rope",
             "norm": "rmsnorm", "qk_norm": True, "activation": "relu2", "tie_head": False, "zero_init_proj": True,
             "bias": False, "dropout": 0.0}, 128, {"muon_lr": 0.02, "lr": 8e-3, "weight_decay": 0.1}),
    "lstm": ({"name": "lstm", "layers": 1, "hidden": 384, "embed": 128, "dropout": 0.0}, 64,
             {"muon_lr": 0.04, "lr": 1.6e-2, "weight_decay": 0.05}),
}
GRAM_FORM_RATIO = optim.GRAM_FORM_RATIO  # tinylm's threshold, restored after a direct variant
VARIANTS = {"bf16": (torch.bfloat16, True), "fp32 direct": (torch.float32, False), "fp32 Gram": (torch.float32, True)}


def build(name: str) -> torch.nn.Module:
    config, _, _ = MODELS[name]
    return build_model(model_config(config["name"], vocab_size=VOCAB,
                                    **{k: v for k, v in config.items() if k != "name"})).train()


def gram_form(allowed: bool) -> None:
    """Let the fp32 iterations take the Gram form where they would (tinylm's choice), or never."""
    optim.GRAM_FORM_RATIO = GRAM_FORM_RATIO if allowed else float("inf")


def step_speed(name: str, variant: str, batch: int, steps: int, bf16: bool) -> float:
    """Tokens/s of full training steps with Muon's iterations as `variant` says."""
    _, block, settings = MODELS[name]
    dtype, gram = VARIANTS[variant]
    gram_form(gram)
    torch.manual_seed(0)
    model = build(name)
    optimizer = build_optimizer(model, TrainConfig(optimizer="muon", **settings))
    optimizer.ns_dtype = dtype
    ids = torch.randint(0, VOCAB, (batch, block + 1))
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = model(ids[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return batch * block * steps / (time.perf_counter() - start)


def iterations_ms(name: str, variant: str, repeats: int = 5) -> float:
    """Milliseconds of one step's Newton-Schulz iterations (5 each) over the model's hidden matrices."""
    dtype, gram = VARIANTS[variant]
    gram_form(gram)
    matrices = [torch.randn_like(p) for p in hidden_matrices(build(name))]
    orthogonalize(matrices[0], 5, dtype)
    start = time.perf_counter()
    for _ in range(repeats):
        for g in matrices:
            orthogonalize(g, 5, dtype)
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=list(MODELS), default="gpt")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=8)
    args = p.parse_args()
    bf16 = native_bf16_cpu()
    picked = build_optimizer(build(args.model), TrainConfig(optimizer="muon")).ns_dtype
    print(f"{cpu_model()} ({cpu_capability()}), {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{args.model}, training in {'bf16 autocast' if bf16 else 'fp32'}; tinylm's Newton-Schulz here: "
          f"{'bf16' if picked == torch.bfloat16 else 'fp32 (Gram form for matrices at least twice as long as wide)'}")
    speeds = {v: step_speed(args.model, v, args.batch_size, args.steps, bf16) for v in VARIANTS}
    for variant, speed in speeds.items():
        print(f"Newton-Schulz {variant:<12} {speed:9,.0f} tokens/s ({speed / speeds['bf16']:.2f}x)  "
              f"iterations alone: {iterations_ms(args.model, variant):7.1f} ms a step")


if __name__ == "__main__":
    main()
