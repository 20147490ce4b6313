"""`tinylm plot softmax [RUN]`: the tempered softmax of a run's next-token distribution (or random logits)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from ..lab.temperature import parse_temperatures, plot_softmax

    path = plot_softmax(args.run, parse_temperatures(args.temperatures), prompt=args.prompt, out=args.out,
                        top=args.top, seed=args.seed)
    print(f"wrote {path}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("plot", help="plots: softmax (the effect of the sampling temperature)",
                       description="Draw a plot to a PNG file.")
    what = p.add_subparsers(dest="plot", required=True, metavar="PLOT")
    s = what.add_parser("softmax", help="softmax(logits / T) for several temperatures T",
                        description="The next-token distribution of RUN after --prompt at several "
                                    "temperatures, or, without RUN, the softmax of random logits.")
    s.add_argument("run", metavar="RUN", nargs="?", help="run directory (omit for random logits)")
    s.add_argument("--temperatures", default="0.2,0.5,1,2,5", help="comma-separated (0.2,0.5,1,2,5)")
    s.add_argument("--prompt", help="text before the predicted token (default: the run's sample prompt)")
    s.add_argument("--top", type=int, default=20,
                   help="tokens shown, most likely first; without RUN: random logits drawn (20)")
    s.add_argument("--seed", type=int, default=0, help="seed of the random logits (0)")
    s.add_argument("--out", default="softmax.png", help="PNG file to write (softmax.png)")
