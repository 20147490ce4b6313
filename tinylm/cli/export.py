"""`tinylm export RUN OUT --format transformers`: a run in another library's format."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from ..publishing.export import EXPORT_FORMATS

    p = sub.add_parser("export", help="write a run in another library's format (GPT runs -> transformers)",
                       description="Write a run in another library's format. transformers: a GPT run as a "
                                   "GPT2LMHeadModel folder that AutoModelForCausalLM.from_pretrained(OUT) "
                                   "loads.")
    p.add_argument("run", metavar="RUN", help="run directory (or Hub id USER/NAME)")
    p.add_argument("out", metavar="OUT", help="folder to write (absent or empty)")
    p.add_argument("--format", choices=sorted(EXPORT_FORMATS), default="transformers",
                   help="target format (transformers)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT, replacing its files")


def run(args: argparse.Namespace) -> int:
    from ..publishing.export import export_run
    from ..publishing.hub import locate_run

    out = export_run(locate_run(args.run)[0], args.out, format=args.format, overwrite=args.overwrite)
    print(f"exported {args.run} -> {out} ({args.format}); load it with "
          f"transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0
