"""Levers at equal tokens: variants of a recipe trained side by side, one single-threaded process each, for
the same number of steps, then their best full-validation loss. Throughput does not enter (each variant
sees the same tokens), so a busy or uneven machine changes the wall time but not the figures; what a
lever costs in speed is measured by cpu_budget.py.

    python bench/equal_tokens.py --base "--preset cpu-best --batch-size 64" --steps 1060 \\
        -- "" "--weight-decay 0.2" "--weight-decay 0.2 --lr 2.2e-2"
    python bench/equal_tokens.py --base gpt-cpu-best --steps 600 -- "" "--optimizer muon --muon-lr 0.02 --lr 8e-3"

(`--` before the variants, so that a variant such as "--stateful" is not read as this script's flag.)

Each variant runs `python -m tinylm train BASE VARIANT --processes 1 --threads 1 --max-steps STEPS
--time-budget 1e9 --sample-tokens 0 --quiet` (the schedule decays over STEPS, not over a time budget) on
Tiny Shakespeare. Printed per variant: best full-val loss, the last epoch's training loss (the gap to
validation shows overfitting), tokens/s (shared cores: not a speed figure) and wall time. The lever tables
in bench/README.md were measured this way: 1,060 steps of 64 x 128 for the LSTM, 600 of 32 x 128 for the
GPT, two or three variants at a time on the 2-core VM.
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

from cpu_budget import RECIPES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="+", help="extra flags per variant ('' for the base recipe itself)")
    p.add_argument("--base", default="cpu-best", help="a recipe of cpu_budget.py, a preset name, or flags")
    p.add_argument("--steps", type=int, default=1060)
    p.add_argument("--data", default="shakespeare")
    p.add_argument("--seed", type=int, default=1337)
    args = p.parse_args()
    os.environ.setdefault("TINYLM_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    base = RECIPES.get(args.base) or (args.base if args.base.startswith("-") else f"--preset {args.base}")
    print(f"base: {base}\n{args.steps} steps per variant, {len(args.variants)} variants side by side, 1 thread each")
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for i, variant in enumerate(args.variants):
            out = Path(tmp) / f"v{i}"
            command = [sys.executable, "-m", "tinylm", "train", *shlex.split(base), *shlex.split(variant),
                       "--processes", "1", "--threads", "1", "--max-steps", str(args.steps), "--time-budget", "1e9",
                       "--sample-tokens", "0", "--data", args.data, "--out", str(out), "--quiet",
                       "--seed", str(args.seed)]
            runs.append((variant, out, time.perf_counter(),
                         subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
        print(f"{'variant':<50} {'best val':>9} {'last train':>10} {'tok/s':>7} {'wall s':>7}")
        for variant, out, start, proc in runs:
            _, err = proc.communicate()
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                print(f"{variant!r:<50} failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")
                continue
            metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
            best = min(m["val_loss"] for m in metrics)
            print(f"{variant or '(base)':<50} {best:>9.4f} {metrics[-1]['train_loss']:>10.4f} "
                  f"{metrics[0]['tokens_per_s']:>7,.0f} {wall:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
