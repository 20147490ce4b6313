"""`tinylm temperature RUN`: samples and text statistics per sampling temperature (Markdown + PNG report)."""

from __future__ import annotations

import argparse

from ._machine import add_machine_flags, apply_threads


def run(args: argparse.Namespace) -> int:
    from ..lab.temperature import parse_temperatures, temperature_report
    from ..publishing.hub import load

    apply_threads(args)
    loaded = load(args.run, device=args.device, precision=args.precision)
    temperature_report(loaded, parse_temperatures(args.temperatures), args.prompts, args.out,
                       samples=args.samples, max_new_tokens=args.max_new_tokens, seed=args.seed,
                       threshold=args.threshold)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("temperature", help="how the sampling temperature changes generated text (report)",
                       description="Sample at several temperatures and measure the text: share of real "
                                   "words, distinct-n, repetition. Writes temperature.md, temperature.png "
                                   "and temperature.json.")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--temperatures", default="0.3,0.8,1.0,1.3,1.8",
                   help="comma-separated (0.3,0.8,1.0,1.3,1.8)")
    p.add_argument("--prompts", nargs="+", metavar="TEXT", help="prompts (default: the run's sample prompt)")
    p.add_argument("--samples", type=int, default=4, help="samples per temperature and prompt (4)")
    p.add_argument("--max-new-tokens", type=int, default=300, help="tokens per sample (300)")
    p.add_argument("--seed", type=int, default=0, help="first sampling seed (0)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="share of real words below which words count as no longer recognisable (0.5)")
    p.add_argument("--out", default="temperature-report", help="report folder (temperature-report)")
    add_machine_flags(p)
