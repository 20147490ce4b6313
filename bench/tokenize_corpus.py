"""Large corpora: `tinylm prepare` throughput (MB/s) and the peak memory of training on prepared token files.

    TINYLM_DATA_DIR=../shared/data python bench/tokenize_corpus.py               # 1 MB and 100 MB corpora
    python bench/tokenize_corpus.py --sizes 1,10 --tokenizers char --text-sizes 1  # a quick look
    python bench/tokenize_corpus.py --sizes 20 --max-steps 0                      # prepare only

Writes deterministic synthetic corpora (lines of Tiny Shakespeare's words drawn at random, blank lines between
"speeches") of each size into a temporary folder, then, each in its own process so that its peak RSS is its own
(os.wait4):
1. `prepare` with each tokenizer: MB/s of text, tokens, peak RSS (the char tokenizer also through the tokenizers
   backend on the smallest corpus, against the lookup table `prepare` uses);
2. a short training (`--max-steps`, small LSTM) on each char-prepared corpus: peak RSS, and its ratio between
   the largest and the smallest corpus;
3. for comparison, the same training on text files (the in-memory path) of --text-sizes MB. Its peak memory is
   a few hundred bytes per character (tokenizers' Encoding of the whole text), so 100 MB of text needs tens of
   GB: by default it runs on 1 and 10 MB only (--text-sizes 100 to try; empty to skip).
Every corpus validates on about the same 100 kB (--val-fraction scaled), so evaluation costs the same.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MB = 1_000_000
VAL_CHARS = 100_000


def shakespeare() -> str:
    from tinylm.data.sources import BUILTIN_CORPORA, builtin_file

    return builtin_file(BUILTIN_CORPORA["shakespeare"]["train"]).read_text(encoding="utf-8")


def write_corpus(path: Path, size: int, seed: int = 0) -> None:
    """`size` bytes of lines of 4-12 words drawn from Tiny Shakespeare, a blank line after about one in five."""
    words = np.array(sorted(set(shakespeare().split())), dtype=object)
    rng = np.random.default_rng(seed)
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < size:
            n = 200_000
            seps = np.where(rng.random(n) < 0.12, np.where(rng.random(n) < 0.2, "\n\n", "\n"), " ").astype(object)
            parts = np.empty(2 * n, dtype=object)
            parts[0::2], parts[1::2] = words[rng.integers(0, len(words), n)], seps
            block = "".join(parts.tolist())
            block = block[: size - written] if written + len(block.encode("utf-8")) > size else block
            f.write(block)
            written += len(block.encode("utf-8"))
        f.write("\n")


def run_child(args: list[str], env: dict | None = None) -> tuple[str, float, float]:
    """(stdout, seconds, peak RSS in MB) of one child process."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        child = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{text[-3000:]}")
    return text, seconds, usage.ru_maxrss / 1024  # KiB on Linux


PREPARE = """
import dataclasses, json, sys
from tinylm import tokenizers
from tinylm.data import tokenfile
from tinylm.tokenizers import TokenizerConfig
char = tokenizers.ENCODING_STRATEGIES["char"]
tokenizers.ENCODING_STRATEGIES["char"] = dataclasses.replace(char, char_table={table})
p = tokenfile.prepare(sys.argv[1], TokenizerConfig(kind=sys.argv[2]), sys.argv[3], val_fraction=float(sys.argv[4]),
                      progress=False, overwrite=True)
print(json.dumps({{"tokens": len(p.train) + len(p.val), "seconds": p.meta["seconds"], "dtype": p.dtype}}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1,100", help="corpus sizes in MB (1,100)")
    p.add_argument("--tokenizers", default="char,bpe")
    p.add_argument("--max-steps", type=int, default=50, help="steps of each training (50; 0: prepare only)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--text-sizes", default="1,10", help="sizes in MB of the text files trained on directly, for "
                                                       "comparison (1,10; empty: none)")
    p.add_argument("--dir", help="work folder (default: a temporary one, removed afterwards)")
    args = p.parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]
    kinds = args.tokenizers.split(",")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        rows = []
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; work folder {work}")
        text_sizes = [float(s) for s in args.text_sizes.split(",") if s]
        corpora = {}
        for size in sorted(set(sizes + text_sizes)):
            path = work / f"corpus-{size:g}MB.txt"
            t0 = time.perf_counter()
            write_corpus(path, int(size * MB))
            corpora[size] = path
            print(f"wrote {path.name}: {path.stat().st_size / MB:.1f} MB in {time.perf_counter() - t0:.1f} s")

        prepared = {}
        jobs = [(size, kind, True) for size in sizes for kind in kinds]
        if "char" in kinds:
            jobs.insert(0, (sizes[0], "char", False))
        for size, kind, table in jobs:
            path, out = corpora[size], work / f"prep-{size:g}MB-{kind}{'' if table else '-backend'}"
            fraction = VAL_CHARS / path.stat().st_size
            text, _, rss = run_child([sys.executable, "-c", PREPARE.format(table=table), str(path), kind, str(out),
                                      str(fraction)])
            result = json.loads(text.strip().splitlines()[-1])
            rate = path.stat().st_size / MB / result["seconds"]
            label = kind if table or kind != "char" else "char (backend encode_batch)"
            rows.append((f"prepare {size:g} MB", label, f"{rate:.2f} MB/s", f"{result['tokens']:,} tokens "
                         f"({result['dtype']}) in {result['seconds']:.1f} s", f"{rss:,.0f} MB"))
            print(" | ".join(rows[-1]), flush=True)
            if table:
                prepared[size, kind] = out

        train = ["--model", "lstm", "--layers", "1", "--hidden", "128", "--embed", "32", "--block-size", "128",
                 "--batch-size", "32", "--max-steps", str(args.max_steps), "--sample-tokens", "50", "--quiet",
                 "--overwrite", "--threads", str(args.threads)]
        kind = "char" if "char" in kinds else kinds[0]
        train_rss = {}
        for size in sizes if args.max_steps else []:
            _, seconds, rss = run_child([sys.executable, "-m", "tinylm", "train", "--data", str(prepared[size, kind]),
                                         "--out", str(work / "run"), *train])
            train_rss[size] = rss
            rows.append((f"train {size:g} MB", f"prepared ({kind})", f"{seconds:.1f} s", f"{args.max_steps} steps",
                         f"{rss:,.0f} MB"))
            print(" | ".join(rows[-1]), flush=True)
        for size in text_sizes if args.max_steps else []:
            fraction = VAL_CHARS / corpora[size].stat().st_size
            _, seconds, rss = run_child([sys.executable, "-m", "tinylm", "train", "--data", str(corpora[size]),
                                         "--val-fraction", f"{fraction:.6f}", "--tokenizer", kind,
                                         "--out", str(work / "run"), *train])
            rows.append((f"train {size:g} MB", f"text file ({kind})", f"{seconds:.1f} s", f"{args.max_steps} steps",
                         f"{rss:,.0f} MB"))
            print(" | ".join(rows[-1]), flush=True)

    print()
    print("| what | tokenizer / data | speed | detail | peak RSS |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if len(sizes) > 1 and args.max_steps:
        small, large = sizes[0], sizes[-1]
        print(f"\npeak RSS of training, {large:g} MB / {small:g} MB prepared corpus: "
              f"{train_rss[large] / train_rss[small]:.2f}x (corpus {large / small:g}x)")


if __name__ == "__main__":
    main()
