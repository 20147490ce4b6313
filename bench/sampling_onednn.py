"""Sampling speed at batch 1 on CPU with and without oneDNN, for a run (tokens/s and the ratio).

    python bench/sampling_onednn.py RUN [--threads 1] [--tokens 300]

tinylm turns oneDNN off while sampling from models that declare `sample_without_onednn` (the recurrent
family); this script measures both settings on the same weights, greedy, in one process.
"""

from __future__ import annotations

import argparse
import time

import torch

import tinylm


def tokens_per_second(run, onednn: bool, tokens: int) -> float:
    torch.backends.mkldnn.set_flags(onednn)
    ids = torch.tensor([run.prompt_ids("ROMEO:")])
    with torch.no_grad():
        logits, state = run.module(ids, None)
        start = time.perf_counter()
        for _ in range(tokens):
            logits, state = run.module(logits[:, -1].argmax(-1, keepdim=True), state)
        return tokens / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tokens", type=int, default=300)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    run = tinylm.load(args.run)
    tokens_per_second(run, True, 20)  # warm-up
    on = tokens_per_second(run, True, args.tokens)
    off = tokens_per_second(run, False, args.tokens)
    print(f"{run.module.describe()}, {run.num_parameters():,} parameters, {args.threads} thread(s)")
    print(f"oneDNN on   {on:8,.0f} tokens/s  (1.00x)")
    print(f"oneDNN off  {off:8,.0f} tokens/s  ({off / on:.2f}x)")


if __name__ == "__main__":
    main()
