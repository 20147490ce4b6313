"""Speed of two checkouts of tinylm side by side, on this machine, taking turns: the default first run (its time
budget cut short) and generation. For a restructuring that must not change speed.

    git worktree add /tmp/before <rev>
    python bench/revisions.py --before /tmp/before --after . [--rounds 3] [--budget 40]

Each round runs `python -m tinylm train --data shakespeare --time-budget BUDGET` with PYTHONPATH set to each
checkout in turn (the order alternates between rounds), then loads one and the same run with each checkout and
times generation (2,000 tokens at T 0.8, best of 5) and the full validation (best of 3). Prints the medians and
after/before ratios. Same interpreter and packages for both: only tinylm's own code differs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MEASURE_LOADED = r'''
import json, sys, time, tinylm
from tinylm.data import load_split
run = tinylm.load(sys.argv[1])
_, val = load_split(run.config.data)
run.generate("ROMEO:", max_new_tokens=100, temperature=0.8, seed=1)
rates, evals = [], []
for _ in range(5):
    t = time.perf_counter(); run.generate("ROMEO:", max_new_tokens=2000, temperature=0.8, seed=1)
    rates.append(2000 / (time.perf_counter() - t))
for _ in range(3):
    t = time.perf_counter(); run.evaluate(val); evals.append(time.perf_counter() - t)
print(json.dumps({"generation_tokens_per_s": max(rates), "full_validation_s": min(evals)}))
'''


def first_run(checkout: Path, out: Path, budget: float, env: dict) -> dict:
    """The default recipe trained for `budget` seconds: its training tokens/s, validation seconds and wall time."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tinylm", "train", "--data", "shakespeare", "--out", str(out),
                           "--time-budget", str(budget)], env=dict(env, PYTHONPATH=str(checkout)), cwd=out.parent,
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{checkout}: tinylm train failed:\n{done.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"train_tokens_per_s": statistics.mean(r["tokens_per_s"] for r in records),
            "epoch_validation_s": statistics.mean(r["eval_seconds"] for r in records),
            "wall_s": time.perf_counter() - started}


def loaded(checkout: Path, run: Path, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE_LOADED, str(run)], env=dict(env, PYTHONPATH=str(checkout)),
                          cwd=run.parent, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{checkout}: loading the run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the earlier revision")
    parser.add_argument("--after", type=Path, default=Path("."), help="a checkout of the later one (default: .)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=40.0, help="seconds of the first run's training")
    args = parser.parse_args()
    checkouts = {"before": args.before.resolve(), "after": args.after.resolve()}
    work = Path(tempfile.mkdtemp(prefix="tinylm-revisions-"))
    env = dict(os.environ, TINYLM_CACHE_DIR=str(work / "cache"))  # the same (empty) store of measured choices
    figures: dict[str, dict[str, list[float]]] = {name: {} for name in checkouts}
    for round_ in range(args.rounds):
        order = list(checkouts) if round_ % 2 == 0 else list(reversed(checkouts))
        shared = work / f"shared-{round_}"  # one run both checkouts load: the code differs, not the weights
        for name in order:
            out = work / f"{name}-{round_}"
            measured = first_run(checkouts[name], out, args.budget, env)
            if not shared.exists():
                out.rename(shared)
            for key, value in measured.items():
                figures[name].setdefault(key, []).append(value)
        for name in order:
            for key, value in loaded(checkouts[name], shared, env).items():
                figures[name].setdefault(key, []).append(value)
        latest = (f"{name} " + ", ".join(f"{k} {v[-1]:,.2f}" for k, v in figures[name].items()) for name in order)
        print(f"round {round_ + 1}: " + "; ".join(latest), flush=True)
    print(f"\nmedians over {args.rounds} rounds (before -> after, ratio after/before):")
    for key in figures["before"]:
        before, after = statistics.median(figures["before"][key]), statistics.median(figures["after"][key])
        print(f"  {key:26} {before:12,.2f} -> {after:12,.2f}   {after / before:.3f}x")


if __name__ == "__main__":
    main()
