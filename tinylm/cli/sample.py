"""`tinylm sample RUN`: generate text, streamed to stdout."""

from __future__ import annotations

import argparse
import sys

from ..errors import TinyLMError
from ._machine import add_machine_flags, apply_threads


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
    add_machine_flags(p)


def run(args: argparse.Namespace) -> int:
    from ..generation.sampling import SamplingConfig
    from ..publishing.hub import load

    apply_threads(args)
    if args.num_samples < 1:
        raise TinyLMError("--num-samples must be at least 1")
    run = load(args.run, device=args.device, precision=args.precision)
    for i in range(args.num_samples):
        config = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                top_k=args.top_k, top_p=args.top_p, greedy=args.greedy,
                                seed=None if args.seed is None else args.seed + i, precision=args.precision)
        if i:
            print("\n" + "-" * 40)
        pieces = run.stream(args.prompt, config=config)
        # the first piece first: a note about the prompt or the precision (stderr) never lands inside the text
        sys.stdout.write(args.prompt + next(pieces, ""))
        sys.stdout.flush()
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a run", description="Generate text, streamed to stdout.")
    add_sampling_flags(p)
