"""`tinylm eval RUN`: loss, perplexity and bits per character; with --memorisation, how much of the model's
samples is copied from its training text."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import TinyLMError
from ._machine import add_machine_flags, apply_threads


def run(args: argparse.Namespace) -> int:
    from ..data import load_corpus
    from ..publishing.hub import load

    apply_threads(args)
    run = load(args.run, device=args.device, precision=args.precision)
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
    mem = _memorisation(run, args) if args.memorisation else None
    if args.json:
        print(json.dumps({**result.to_dict(), **({"memorisation": mem.to_dict()} if mem else {})}))
    else:
        source = args.text or "the validation split"
        print(f"{source}: loss {result.loss:.4f} nats/token, perplexity {result.perplexity:.3f}, "
              f"{result.bits_per_char:.4f} bits/char over {result.tokens:,} tokens ({result.chars:,} chars)")
        if mem:
            print(mem.summary())
    return 0


def _memorisation(run, args: argparse.Namespace):
    from ..data import load_split
    from ..evaluation.memorisation import memorisation

    if args.samples < 1:
        raise TinyLMError(f"--samples must be at least 1, got {args.samples}")
    run.check_data()  # a run from the Hub never reads a local file its config names: refused before sampling
    prompt = args.prompt if args.prompt is not None else run.config.train.sample_prompt or ""
    texts = [run.generate(prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                          seed=args.seed + i) for i in range(args.samples)]
    train_text, _ = load_split(run.config.data)
    return memorisation(texts, train_text, prompt)


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="loss, perplexity and bits per character of a run")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--text", help="evaluate on this file instead of the run's validation split")
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--json", action="store_true",
                   help='print {"loss", "perplexity", "bits_per_char", "tokens", ...}')
    g = p.add_argument_group("memorisation")
    g.add_argument("--memorisation", action="store_true",
                   help="also sample and measure copying from the training text (longest copied span, "
                        "novel n-grams)")
    g.add_argument("--samples", type=int, default=5, help="samples to measure (5)")
    g.add_argument("--prompt", help="prompt of the samples (default: the run's sample prompt)")
    g.add_argument("--max-new-tokens", type=int, default=300)
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--seed", type=int, default=0, help="seed of the first sample (0)")
    add_machine_flags(p)  # the loss is computed in fp32 whatever --precision says; it sets the samples' precision
