"""`tinylm export RUN OUT --format transformers|gguf|onnx`: a run in another library's format."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from ..publishing.export import EXPORT_FORMATS

    formats = "; ".join(f"{name}: {f.about}" for name, f in EXPORT_FORMATS.items())
    p = sub.add_parser("export", help="write a GPT run for transformers, llama.cpp (GGUF) or ONNX Runtime",
                       description=f"Write a GPT run in another library's format. {formats}.")
    p.add_argument("run", metavar="RUN", help="run directory (or Hub id USER/NAME)")
    p.add_argument("out", metavar="OUT", help="folder to write (absent or empty)")
    p.add_argument("--format", choices=list(EXPORT_FORMATS), default="transformers",
                   help="target format (default: transformers)")
    p.add_argument("--outtype", choices=["f32", "f16", "q8_0"], default=None,
                   help="gguf only: weight type of the matrices (default f32; q8_0: 8-bit, about 4x smaller "
                        "and faster in llama.cpp)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in OUT")


def run(args: argparse.Namespace) -> int:
    from ..publishing.export import EXPORT_FORMATS, export_run
    from ..publishing.hub import locate_run

    out = export_run(locate_run(args.run)[0], args.out, format=args.format, overwrite=args.overwrite,
                     outtype=args.outtype)
    print(f"exported {args.run} -> {out} ({args.format}): {EXPORT_FORMATS[args.format].about}")
    return 0
