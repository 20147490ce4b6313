"""Levers at equal tokens: variants of a recipe trained side by side, one single-threaded process each, for
the same number of steps, then their best full-validation loss; with --seeds, once per seed, and per variant
the median, mean, sd and worst over the seeds (a lever's effect is a difference of medians: one seed moves
the loss by 0.01-0.03, more than several levers do). Throughput does not enter (each variant sees the same
tokens), so a busy or uneven machine changes the wall time but not the figures; what a lever costs in speed
is measured by cpu_budget.py.

    python bench/equal_tokens.py --base "--preset cpu-best --batch-size 64" --steps 1060 \\
        -- "" "--weight-decay 0.2" "--weight-decay 0.2 --lr 2.2e-2"
    python bench/equal_tokens.py --base cpu-best --steps 1060 --seeds 1-5 -- "" "--block-size 64 --max-steps 2120"
    python bench/equal_tokens.py --base gpt-cpu-best --steps 600 -- "" "--optimizer muon --muon-lr 0.02 --lr 8e-3"

(`--` before the variants, so that a variant such as "--stateful" is not read as this script's flag.)

Each run is `python -m tinylm train BASE --processes 1 --threads 1 --max-steps STEPS --time-budget 1e9
--sample-tokens 0 --quiet --seed SEED VARIANT` on Tiny Shakespeare (the schedule decays over STEPS, not over
a time budget). The variant's flags come last, so a variant that changes the tokens per step (--block-size,
--batch-size) keeps the tokens equal with its own --max-steps. As many runs as the machine has cores go at
once (--parallel). Printed per run: best full-val loss, the last epoch's training loss (the gap to validation
shows overfitting), tokens/s (shared cores: not a speed figure) and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cpu_budget import RECIPES, SIDES, cpu_label, print_over_seeds, read_run

from tinylm.config import parse_seeds
from tinylm.errors import TinyLMError


def command_for(base: str, variant: str, steps: int, seed: int, data: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "tinylm", "train", *shlex.split(base), "--processes", "1", "--threads", "1",
            "--max-steps", str(steps), "--time-budget", "1e9", "--sample-tokens", "0", "--data", data,
            "--out", str(out), "--quiet", "--seed", str(seed), *shlex.split(variant)]


def finish(job: dict) -> dict | None:
    """Wait for one run; its figures in cpu_budget's form (for print_over_seeds), or None if it failed."""
    _, err = job["proc"].communicate()
    wall = time.perf_counter() - job["start"]
    name = job["variant"] or "(base)"
    if job["proc"].returncode != 0:
        print(f"{name:<44} {job['side']:<6} {job['seed']:>5}  failed: "
              f"{err.strip().splitlines()[-1] if err.strip() else job['proc'].returncode}", flush=True)
        return None
    out = job["out"]
    summary, metrics, _ = read_run(out)
    best = min(m["val_loss"] for m in metrics)
    print(f"{name:<44} {job['side']:<6} {job['seed']:>5} {best:>9.4f} {metrics[-1]['train_loss']:>10.4f} "
          f"{metrics[0]['tokens_per_s']:>7,.0f} {wall:>7.1f}", flush=True)
    return {"recipe": name, "side": job["side"], "seed": job["seed"], "best_val_loss": best,
            "wall_seconds": round(wall, 1), "precision": summary.get("precision"),
            "cpu": cpu_label(summary)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="+", help="extra flags per variant ('' for the base recipe itself)")
    p.add_argument("--base", default="cpu-best", help="a recipe of cpu_budget.py, a preset name, or flags")
    p.add_argument("--steps", type=int, default=1060)
    p.add_argument("--data", default="shakespeare")
    p.add_argument("--seeds", default="1", help="a count from 1337 (3), a range (1-5) or a list (1,7,42) "
                                                "(default: 1, the seed 1337)")
    p.add_argument("--sides", nargs="+", choices=list(SIDES), default=["native"],
                   help="native: this CPU as it is; avx2: as a CPU without native bf16 (see cpu_budget.py)")
    p.add_argument("--parallel", type=int, default=os.cpu_count() or 1, help="runs at once (default: the cores)")
    p.add_argument("--json", action="store_true", help="also print the results as JSON lines")
    args = p.parse_args()
    try:
        seeds = parse_seeds(args.seeds)
    except TinyLMError as e:
        p.error(str(e))
    os.environ.setdefault("TINYLM_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    base = RECIPES.get(args.base) or (args.base if args.base.startswith("-") else f"--preset {args.base}")
    print(f"base: {base}\n{args.steps} steps per run unless a variant sets --max-steps; {len(args.variants)} "
          f"variants x {len(seeds)} seeds x {len(args.sides)} sides, {args.parallel} at once, 1 thread each")
    print(f"{'variant':<44} {'side':<6} {'seed':>5} {'best val':>9} {'last train':>10} {'tok/s':>7} {'wall s':>7}")
    plan = [(side, seed, variant) for side in args.sides for variant in args.variants for seed in seeds]
    results, running = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (side, seed, variant) in enumerate(plan):
            if len(running) >= args.parallel:
                results.append(finish(running.pop(0)))
            out = Path(tmp) / f"r{i}"
            proc = subprocess.Popen(command_for(base, variant, args.steps, seed, args.data, out),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    env={**os.environ, **SIDES[side]})
            running.append({"variant": variant, "side": side, "seed": seed, "out": out, "proc": proc,
                            "start": time.perf_counter()})
        results += [finish(job) for job in running]
    results = [r for r in results if r]
    if args.json:
        for r in results:
            print(json.dumps(r))
    print_over_seeds(results)


if __name__ == "__main__":
    main()
