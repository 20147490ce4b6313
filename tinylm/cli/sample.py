"""`tinylm sample RUN`: generate text, streamed to stdout."""

from __future__ import annotations

import argparse
import sys

from ..errors import TinyLMError


def add_sampling_flags(p) -> None:
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--prompt", default="", help="text to continue (default: start a new text)")
    p.add_argument("--max-new-tokens", type=int, default=300)
    p.add_argument("--temperature", type=float, default=1.0, help="< 1 safer, > 1 more surprising (1.0)")
    p.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    p.add_argument("--top-p", type=float, help="sample among the most likely tokens holding probability p")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--seed", type=int, help="makes sampling repeatable")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "int8"], default="auto",
                   help="fp32: exact; bf16: Linear layers in bf16, ~2x faster on CPUs for models of millions of "
                        "parameters; int8: int8 weights (CPU), faster, less exact; auto (default): where the CPU "
                        "and model size make it pay, int8 on x86-64 (checked against fp32) or bf16, else fp32")
    p.add_argument("--threads", type=int, help="CPU threads for torch (1 is often as fast at batch 1, and "
                                               "steadier on a busy machine)")


def run(args: argparse.Namespace) -> int:
    from ..generation import SamplingConfig
    from ..runs import load

    if args.threads is not None:
        if args.threads < 1:
            raise TinyLMError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    run = load(args.run, device=args.device)
    if args.num_samples < 1:
        raise TinyLMError("--num-samples must be at least 1")
    for i in range(args.num_samples):
        config = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                top_k=args.top_k, top_p=args.top_p, greedy=args.greedy,
                                seed=None if args.seed is None else args.seed + i, precision=args.precision)
        if i:
            print("\n" + "-" * 40)
        sys.stdout.write(args.prompt)
        sys.stdout.flush()
        for piece in run.stream(args.prompt, config=config):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a run", description="Generate text, streamed to stdout.")
    add_sampling_flags(p)
