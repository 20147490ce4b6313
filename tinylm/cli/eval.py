"""`tinylm eval RUN`: loss, perplexity and bits per character."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import TinyLMError


def run(args: argparse.Namespace) -> int:
    from ..data import load_corpus
    from ..runs import load

    run = load(args.run, device=args.device)
    text = None
    if args.text:
        if not Path(args.text).exists():
            raise TinyLMError(f"--text {args.text}: no such file")
        text = load_corpus(args.text, encoding=args.encoding).train
        if not text.strip():
            raise TinyLMError(f"--text {args.text} is empty")
        unknown = run.tokenizer.unknown_symbols(text)
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:10])
            print(f"note: {len(unknown)} symbols of the text are not in the vocabulary and count as <unk>: {shown}",
                  file=sys.stderr)
    result = run.evaluate(text)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        source = args.text or "the validation split"
        print(f"{source}: loss {result.loss:.4f} nats/token, perplexity {result.perplexity:.3f}, "
              f"{result.bits_per_char:.4f} bits/char over {result.tokens:,} tokens ({result.chars:,} chars)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="loss, perplexity and bits per character of a run")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--text", help="evaluate on this file instead of the run's validation split")
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--json", action="store_true", help='print {"loss", "perplexity", "bits_per_char", "tokens"}')
    p.add_argument("--device", default="cpu")
