"""Training and generation speed on a busy machine: 0, 1 and 2 other CPU-bound processes (busy loops) beside
tinylm, against the fair share of the CPU and tinylm's speed on the quiet machine.

    python bench/busy_machine.py                    # default LSTM and gpt-cpu GPT, 0 / 1 / 2 busy loops
    python bench/busy_machine.py --others 0 2 --seconds 5

Each measurement is a fresh process (thread pools and OpenMP's wait policy are set when torch starts):
training steps (forward, loss, backward, clip, AdamW on random tokens, batch 32 x 128, fp32) for --seconds
after two warm-up steps, and greedy generation of tokens for --seconds. Variants: all cores as threads (what
tinylm did before it looked at the load), one thread, all cores with OpenMP's passive wait policy, and tinylm's
default (apply_threads with no --threads: the cores left over by the other processes, measured at start-up).
The fair share of N busy loops on C cores is the quiet speed x C / (C + N): every runnable thread gets the same
time, and tinylm has C of the C + N.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

MEASURE = r'''
import json, sys, time
args = json.loads(sys.argv[1])
import torch, torch.nn.functional as F
from tinylm.machine.devices import apply_threads
from tinylm.models import build_model, model_config
from tinylm.training.presets import PRESETS
threads = apply_threads(args["threads"])
torch.manual_seed(0)
preset = PRESETS[args["preset"]]["model"]
config = model_config(preset["name"], vocab_size=68, **{k: v for k, v in preset.items() if k != "name"})
model = build_model(config)
x = torch.randint(0, 68, (32, 128))
y = torch.randint(0, 68, (32, 128))
if args["task"] == "train":
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    def step():
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, 68), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return x.numel()
else:
    model.eval()
    state = {"ids": torch.zeros(1, 1, dtype=torch.long), "carry": None}
    def step():
        with torch.inference_mode():
            for _ in range(16):
                logits, state["carry"] = model(state["ids"], state["carry"])
                state["ids"] = logits[:, -1:].argmax(-1)
                if config.__class__.__name__ == "GPTConfig":
                    state["carry"] = None  # a fresh one-token context: the step's cost, not a growing cache
        return 16
step(); step()
tokens, start = 0, time.perf_counter()
while time.perf_counter() - start < args["seconds"]:
    tokens += step()
print(json.dumps({"tokens_per_s": tokens / (time.perf_counter() - start), "threads": threads}))
'''

VARIANTS = {
    "all cores": ({}, "cores"),
    "1 thread": ({}, 1),
    "all cores, passive wait": ({"OMP_WAIT_POLICY": "PASSIVE"}, "cores"),
    "tinylm default": ({}, None),
}


def busy_loops(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def measure(task: str, preset: str, variant: str, seconds: float) -> dict:
    env, threads = VARIANTS[variant]
    threads = os.cpu_count() if threads == "cores" else threads
    arguments = json.dumps({"task": task, "preset": preset, "threads": threads, "seconds": seconds})
    proc = subprocess.run([sys.executable, "-c", MEASURE, arguments], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{task} {preset} {variant} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--others", type=int, nargs="+", default=[0, 1, 2], help="busy loops beside tinylm (0 1 2)")
    p.add_argument("--presets", nargs="+", default=["default", "gpt-cpu"])
    p.add_argument("--tasks", nargs="+", default=["train", "generate"], choices=["train", "generate"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seconds", type=float, default=6.0, help="measured seconds per figure (6)")
    args = p.parse_args()
    from tinylm.machine.devices import cpu_capability, cpu_model

    cores = os.cpu_count()
    print(f"{cpu_model()} ({cpu_capability()}), {cores} CPUs; {args.seconds:g} s per figure; tokens/s, then the "
          f"ratio to the same variant on the quiet machine and to the fair share (quiet 'all cores' x C/(C+N))")
    quiet: dict[tuple, float] = {}
    for others in sorted(args.others):
        loops = busy_loops(others)
        try:
            time.sleep(1.0 if others else 0.0)  # the loops are running and the load is seen
            for task in args.tasks:
                for preset in args.presets:
                    for variant in args.variants:
                        r = measure(task, preset, variant, args.seconds)
                        key = (task, preset, variant)
                        if others == 0:
                            quiet[key] = r["tokens_per_s"]
                        base = quiet.get(key)
                        fair = quiet.get((task, preset, "all cores"))
                        fair = fair * cores / (cores + others) if fair else None
                        ratios = (f"{r['tokens_per_s'] / base:5.2f}x quiet" if base else "") + (
                            f"  {r['tokens_per_s'] / fair:5.2f}x fair" if fair else "")
                        print(f"{others} busy  {task:<8} {preset:<8} {variant:<24} {r['threads']} thr "
                              f"{r['tokens_per_s']:>9,.0f} tok/s  {ratios}", flush=True)
        finally:
            for loop in loops:
                loop.kill()
                loop.wait()


if __name__ == "__main__":
    main()
