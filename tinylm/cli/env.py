"""`tinylm env`: the versions, devices and choices of this machine, for a bug report (like `transformers env`)."""

from __future__ import annotations

import argparse
import json


def run(args: argparse.Namespace) -> int:
    from ..machine.report import environment_report, format_environment

    report = environment_report()
    print(json.dumps(report, indent=2) if args.json else format_environment(report))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("env", help="versions, devices and what --precision auto picks here (for bug reports)",
                       description="Print tinylm, Python and torch versions, the devices, the CPU (model, "
                                   "instruction set, native bf16, int8 kernel), what `--precision auto` picks for "
                                   "training and generation per model family, threads, and the optional extras "
                                   "installed. Paste it into a bug report.")
    p.add_argument("--json", action="store_true", help="print one JSON object")
