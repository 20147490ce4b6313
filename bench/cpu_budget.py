"""Quality at a fixed wall-clock budget on this CPU: full-validation loss reached by a < 1M-parameter
recipe from the moment `tinylm train` is typed to the moment it exits.

    python bench/cpu_budget.py                                  # cpu-best and the best small GPT, ~215 s each
    python bench/cpu_budget.py --recipes cpu-best --seeds 1-5   # one recipe, seeds 1 to 5: median, mean, sd, worst
    python bench/cpu_budget.py --recipes "my-lstm=--model lstm --hidden 320 --time-budget 200"
    python bench/cpu_budget.py --recipes default --sides native avx2   # the README's first command, both CPU kinds

`--sides avx2` runs the command as on a CPU without native bf16: the process starts with
ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 (oneDNN, ATen and MKL limited
to AVX2), so that a machine with
native bf16 measures the other kind too; `native` is the machine as it is.

Each recipe runs `python -m tinylm train RECIPE --data shakespeare --out TMP --quiet` in a fresh process
(Tiny Shakespeare, last 10% of the characters validate; val loss = mean nats per character over the WHOLE
validation split). The clock starts just before the process is launched, so interpreter start-up,
imports, data loading and the final evaluation and save are all inside the budget. Printed per recipe:
parameters, epochs, tokens/s, the best full-validation loss, the wall time of the whole command, and when
the best checkpoint was saved; then, per recipe and side, the median, mean, standard deviation and worst of the
best validation losses over the seeds and the median and longest wall time (a recipe's figure is its median
over seeds: one seed can sit 0.04 above or below it); last the nanoGPT reference measured on this kind of
machine (its CPU config: 0.80M parameters, 215 s, val 1.898) for the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tinylm.config import parse_seeds
from tinylm.errors import TinyLMError

NANOGPT_CPU = {"seconds": 215.0, "val_loss": 1.898}  # nanoGPT's CPU config on a 2-core machine like CI's

# The best GPT under 1M parameters found for the same budget: 4 x 128 (804k parameters) with the modern options
# of models/gpt.py, no dropout, Muon (lr 0.02) for the hidden matrices and AdamW 8e-3 for the rest, weight decay
# 0.1, decaying linearly to zero at the end of the same 205 s budget. At equal tokens (600 steps of 32 x 128):
# AdamW 3e-3 / 8e-3: 1.807 / 1.823; Muon 0.02 + AdamW 8e-3: 1.552; Muon 0.04: 1.567; 0.013: 1.547; AdamW part
# at 1.6e-2: 1.556; weight decay 0.1: 1.543. Two processes: no faster for this model.
GPT_CPU_BEST = ("--model gpt --layers 4 --heads 4 --embed 128 --block-size 128 --positions rope --norm rmsnorm "
                "--qk-norm --activation relu2 --no-tie-head --zero-init-proj --no-bias --dropout 0 --batch-size 32 "
                "--optimizer muon --muon-lr 0.02 --lr 8e-3 --weight-decay 0.1 --lr-schedule linear --min-lr-ratio 0 "
                "--warmup-steps 50 --time-budget 205 --epochs 1000000 --patience 0")
RECIPES = {
    "default": "",  # the README's first command: no preset, no model (preset default)
    "cpu-best": "--preset cpu-best",
    "gpt-cpu-best": GPT_CPU_BEST,
}


SIDES = {"native": {}, "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
                                 "MKL_ENABLE_INSTRUCTIONS": "AVX2"}}


def read_run(out: Path) -> tuple[dict, list[dict], list[dict]]:
    """A finished run directory's summary.json, metrics.jsonl (one record per evaluated epoch) and samples.jsonl."""
    def records(name: str) -> list[dict]:
        path = out / name
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return json.loads((out / "summary.json").read_text()), records("metrics.jsonl"), records("samples.jsonl")


def cpu_label(summary: dict) -> str:
    """The CPU a run's summary.json names, with the capability it ran with ("AMD EPYC (avx2)")."""
    return f"{summary.get('cpu')} ({summary.get('cpu_capability')})"


def run_recipe(name: str, flags: str, seed: int, threads: int | None, data: str, side: str = "native") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        command = [sys.executable, "-m", "tinylm", "train", *shlex.split(flags), "--data", data, "--out", str(out),
                   "--quiet", "--seed", str(seed)]
        if threads:
            command += ["--threads", str(threads)]
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **SIDES[side]})
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")
        summary, metrics, samples = read_run(out)
    best = min(metrics, key=lambda m: m["val_loss"])
    # outside the training phase: start-up (to the first step) and the closing work (summary, reload)
    outside = wall - summary.get("wall_seconds", summary["train_seconds"])
    startup = summary.get("startup_seconds", 0.0)
    return {
        "recipe": name,
        "side": side,
        "precision": summary.get("precision"),
        "cpu": cpu_label(summary),
        "last_sample": samples[-1]["text"] if samples else "",
        "seed": seed,
        "parameters": summary["parameters"],
        "epochs": len(metrics),
        "tokens_per_s": round(sum(m["tokens_per_s"] * m["epoch_seconds"] for m in metrics)
                              / max(sum(m["epoch_seconds"] for m in metrics), 1e-9)),
        "best_val_loss": best["val_loss"],
        "val_losses": [m["val_loss"] for m in metrics],
        "eval_seconds": round(sum(m.get("eval_seconds", 0.0) for m in metrics), 1),  # inside the budget
        "val_context": best.get("val_context", "windows"),
        "wall_seconds": round(wall, 1),
        "startup_seconds": round(startup, 1),
        "outside_training_seconds": round(outside, 1),
        # the best weights are saved right after their evaluation, which ends at the epoch's wall_seconds
        "best_saved_at_seconds": round(startup + best.get("wall_seconds", best["elapsed_seconds"]), 1),
    }


def print_over_seeds(results: list[dict]) -> None:
    """Per recipe and side: the best validation losses' median, mean, sd and worst over the seeds."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["recipe"], r["side"]), []).append(r)
    w = max([14] + [len(recipe) for recipe, _ in groups])
    print(f"\n{'recipe':<{w}} {'side':<6} {'prec':<4} {'seeds':>5} {'median':>7} {'mean':>7} {'sd':>6} {'worst':>7} "
          f"{'best':>7} {'wall med':>8} {'wall max':>8}")
    for (recipe, side), runs in groups.items():
        losses = [r["best_val_loss"] for r in runs]
        walls = [r["wall_seconds"] for r in runs]
        sd = statistics.stdev(losses) if len(losses) > 1 else 0.0
        precisions = "/".join(sorted({r["precision"] or "-" for r in runs}))
        print(f"{recipe:<{w}} {side:<6} {precisions:<4} {len(runs):>5} {statistics.median(losses):>7.4f} "
              f"{statistics.mean(losses):>7.4f} {sd:>6.4f} {max(losses):>7.4f} {min(losses):>7.4f} "
              f"{statistics.median(walls):>8.1f} {max(walls):>8.1f}")
    print(f"CPU: {results[0]['cpu']}" if results else "no runs")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=list(RECIPES),
                   help="recipe names (cpu-best, gpt-cpu-best), other presets, or NAME=FLAGS")
    p.add_argument("--seeds", default="1", help="a count from 1337 (3), a range (1-5) or a list (1,7,42): one run "
                                                "per seed, one process at a time (default: 1, the seed 1337)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice, all cores)")
    p.add_argument("--data", default="shakespeare")
    p.add_argument("--sides", nargs="+", choices=list(SIDES), default=["native"],
                   help="native: this CPU as it is; avx2: as a CPU without native bf16 (see above)")
    p.add_argument("--show-sample", action="store_true", help="print each run's last sample")
    p.add_argument("--json", action="store_true", help="also print the results as JSON lines")
    args = p.parse_args()
    try:
        seeds = parse_seeds(args.seeds)
    except TinyLMError as e:
        p.error(str(e))
    os.environ.setdefault("TINYLM_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    print(f"{os.cpu_count()} cores; budget recipes on {args.data}; nanoGPT CPU reference: val "
          f"{NANOGPT_CPU['val_loss']} in {NANOGPT_CPU['seconds']:.0f} s")
    header = (f"{'recipe':<14} {'side':<6} {'prec':<4} "
              f"{'seed':>5} {'params':>9} {'epochs':>6} {'tok/s':>7} {'best val':>9} {'eval':>7} "
              f"{'wall s':>7} {'best at s':>9} {'start-up s':>10} {'outside s':>9}  val by epoch")
    print(header)
    results = []
    for recipe in args.recipes:
        name, _, flags = recipe.partition("=")
        flags = flags or RECIPES.get(name) or f"--preset {name}"
        for side in args.sides:
            for seed in seeds:
                r = run_recipe(name, flags, seed, args.threads, args.data, side)
                results.append(r)
                print(f"{r['recipe']:<14} {r['side']:<6} {r['precision'] or '-':<4} "
                      f"{r['seed']:>5} {r['parameters']:>9,} {r['epochs']:>6} {r['tokens_per_s']:>7,} "
                      f"{r['best_val_loss']:>9.4f} {r['val_context']:>7} {r['wall_seconds']:>7.1f} "
                      f"{r['best_saved_at_seconds']:>9.1f} {r['startup_seconds']:>10.1f} "
                      f"{r['outside_training_seconds']:>9.1f}  "
                      + " ".join(f"{v:.3f}" for v in r["val_losses"]), flush=True)
                if args.show_sample:
                    print("    " + r["last_sample"].replace("\n", "\n    "))
                if args.json:
                    print(json.dumps(r))
    print_over_seeds(results)
    for r in results:
        gap = NANOGPT_CPU["val_loss"] - r["best_val_loss"]
        print(f"{r['recipe']} ({r['side']}: {r['cpu']}, seed {r['seed']}): {gap:+.3f} nats/char below "
              f"nanoGPT's CPU config at "
              f"{r['wall_seconds'] / NANOGPT_CPU['seconds']:.2f}x its wall time")


if __name__ == "__main__":
    main()
