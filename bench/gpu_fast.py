"""Time to quality of the gpu-fast recipe: `tinylm train --preset gpu-fast` as a user runs it, timed from
just before the process starts.

    python bench/gpu_fast.py                        # the preset on Tiny Shakespeare (needs a GPU to mean much)
    python bench/gpu_fast.py --ablations            # also one run per lever: classic architecture, AdamW,
                                                    # both, fp32, dropout 0.2
    python bench/gpu_fast.py --smoke --ablations    # tiny sizes on the CPU, a few seconds a run: checks the script
    python bench/gpu_fast.py -- --max-steps 300     # flags after -- go to every `tinylm train`

For each run it reports the seconds from process start to the first saved checkpoint with full-validation
loss <= --target (1.47: model.safetensors is written before the epoch's line reaches metrics.jsonl, so the
moment the line appears the weights are on disk; lines are polled every 5 ms), the best validation loss
within --budget seconds (60), the start-up (process start to the first training step, `startup_seconds` in
summary.json), the training time per step, the evaluation time per epoch and the total wall time.
Runs go to a temporary folder unless --out is given.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# One lever changed at a time against the preset (what the Performance issue asks to measure).
CLASSIC = ["--positions", "learned", "--norm", "layernorm", "--no-qk-norm", "--activation", "gelu", "--tie-head",
           "--no-zero-init-proj", "--bias"]
VARIANTS = {
    "gpu-fast": [],
    "classic architecture": CLASSIC,
    "adamw (no muon)": ["--optimizer", "adamw"],
    "classic + adamw": CLASSIC + ["--optimizer", "adamw"],
    "fp32 (no bf16)": ["--precision", "fp32"],
    "dropout 0.2": ["--dropout", "0.2"],
}
# --smoke: a model and a corpus small enough for a CPU to train two epochs in seconds.
SMOKE_FLAGS = ["--layers", "2", "--heads", "2", "--embed", "32", "--block-size", "32", "--batch-size", "16",
               "--epochs", "2", "--device", "cpu", "--threads", "1"]


def run(name: str, flags: list[str], out: Path, target: float, budget: float) -> dict:
    """One `tinylm train --preset gpu-fast` process; every metrics.jsonl line stamped when it appeared."""
    run_dir = out / re.sub(r"[^a-z0-9]+", "-", name).strip("-")
    command = [sys.executable, "-m", "tinylm", "train", "--preset", "gpu-fast", "--out", str(run_dir),
               "--overwrite", "--quiet", *flags]
    metrics = run_dir / "metrics.jsonl"
    records: list[dict] = []
    done = threading.Event()

    def watch(start: float) -> None:
        seen = 0
        while True:
            finished = done.is_set()  # read once more after the process ends
            try:
                text = metrics.read_text(encoding="utf-8")
            except OSError:
                text = ""
            lines = text.splitlines()
            complete = lines if text.endswith("\n") else lines[:-1]
            for line in complete[seen:]:
                records.append({**json.loads(line), "seen_at": time.perf_counter() - start})
            seen = max(seen, len(complete))
            if finished:
                return
            time.sleep(0.005)

    print(f"[{name}] {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watcher = threading.Thread(target=watch, args=(start,), daemon=True)
    watcher.start()
    output, _ = process.communicate()
    wall = time.perf_counter() - start
    done.set()
    watcher.join()
    if process.returncode != 0:
        print(output, file=sys.stderr)
        raise SystemExit(f"[{name}] tinylm train failed with exit code {process.returncode}")
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    reached = [r["seen_at"] for r in records if r["val_loss"] <= target]
    in_budget = [r["val_loss"] for r in records if r["seen_at"] <= budget]
    steps = max(summary.get("steps") or 0, 1)
    return {
        "variant": name,
        "flags": flags,
        "to_target_s": round(reached[0], 2) if reached else None,
        "best_val_in_budget": min(in_budget) if in_budget else None,
        "best_val": summary.get("best_val_loss"),
        "startup_s": summary.get("startup_seconds"),
        "ms_per_step": round(1000 * summary.get("train_seconds", math.nan) / steps, 1),
        "eval_ms": round(1000 * sum(r["eval_seconds"] for r in records) / max(len(records), 1), 1),
        "steps": summary.get("steps"),
        "epochs": len(records),
        "wall_s": round(wall, 2),
        "hardware": summary.get("hardware"),
        "parameters": summary.get("parameters"),
        "curve": [[round(r["seen_at"], 2), r["step"], r["val_loss"]] for r in records],
    }


def smoke_corpus(folder: Path) -> Path:
    """The first 20,000 characters of Tiny Shakespeare (from $TINYLM_DATA_DIR or tinylm's cache/download)."""
    from tinylm.config import DataConfig
    from tinylm.data import load_split

    train_text, val_text = load_split(DataConfig(source="shakespeare"))
    path = folder / "smoke.txt"
    path.write_text((train_text + val_text)[:20_000], encoding="utf-8")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", type=float, help="validation loss to reach (1.47; 3.2 with --smoke)")
    p.add_argument("--budget", type=float, default=60.0, help="seconds for 'best validation loss within' (60)")
    p.add_argument("--ablations", action="store_true", help="also run one variant per lever: " + ", ".join(VARIANTS))
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the script in seconds")
    p.add_argument("--out", type=Path, help="keep the runs in this folder (default: a temporary one)")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    p.add_argument("train_flags", nargs="*", help="after --: flags for every `tinylm train`")
    args = p.parse_args()
    target = args.target if args.target is not None else (3.2 if args.smoke else 1.47)

    with tempfile.TemporaryDirectory(prefix="gpu-fast-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        extra = list(args.train_flags)
        if args.smoke:
            extra = ["--data", str(smoke_corpus(out)), *SMOKE_FLAGS, *extra]
        # Warm the file-system cache (torch's libraries), so the first run's start-up is not the only cold one.
        subprocess.run([sys.executable, "-c", "import torch, tinylm.training"], cwd=REPO, check=True)
        names = list(VARIANTS) if args.ablations else ["gpu-fast"]
        results = [run(name, VARIANTS[name] + extra, out, target, args.budget) for name in names]

    print(f"\n{results[0]['hardware']}; {results[0]['parameters']:,} parameters; target val <= {target:g}, "
          f"budget {args.budget:g} s; extra flags: {' '.join(extra) or '-'}")
    header = (f"{'variant':<22} {'to target':>10} {'best in budget':>15} {'best val':>9} {'start-up':>9} "
              f"{'ms/step':>8} {'eval ms':>8} {'steps':>6} {'wall':>8}")
    print(header)
    print("-" * len(header))

    def show(value, unit: str = "", digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}{unit}"

    for r in results:
        print(f"{r['variant']:<22} {show(r['to_target_s'], ' s'):>10} {show(r['best_val_in_budget'], '', 4):>15} "
              f"{show(r['best_val'], '', 4):>9} {show(r['startup_s'], ' s'):>9} {r['ms_per_step']:>8.1f} "
              f"{r['eval_ms']:>8.1f} {r['steps']:>6} {r['wall_s']:>6.1f} s")
    if args.json:
        args.json.write_text(json.dumps({"target": target, "budget": args.budget, "results": results}, indent=1),
                             encoding="utf-8")


if __name__ == "__main__":
    main()
