"""`tinylm serve RUN [RUN ...]`: the web playground (see docs/playground.md)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from ..publishing.hub import load
    from ._machine import apply_threads

    apply_threads(args)
    # Runs load before Gradio is imported (seconds): a mistyped run directory fails at once.
    runs = [load(name, device=args.device, precision=args.precision) for name in args.runs]
    from ..lab.playground import serve

    serve(runs, host=args.host, port=args.port)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="a local web playground for one or more runs",
                       description="Serve a web page to try runs side by side: prompt, sampling controls, "
                                   "streamed text and the next-token distribution. Needs tinylm[app].")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (or Hub ids), one column each")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (127.0.0.1: this machine only; 0.0.0.0: the whole network)")
    p.add_argument("--port", type=int, help="port (default: 7860, or the next free one)")
    from ._machine import add_machine_flags

    add_machine_flags(p)
