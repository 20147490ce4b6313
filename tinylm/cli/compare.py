"""`tinylm compare --models markov,lstm,gru,gpt`: several models on one corpus and one time budget."""

from __future__ import annotations

import argparse

from ._machine import add_machine_flags


def run(args: argparse.Namespace) -> int:
    from ..config import DataConfig, RunConfig, TrainConfig
    from ..lab.compare import compare
    from ..tokenizers import TokenizerConfig

    config = RunConfig(data=DataConfig(source=args.data, block_size=args.block_size),
                       tokenizer=TokenizerConfig(kind=args.tokenizer),
                       train=TrainConfig(device=args.device, precision=args.precision, threads=args.threads,
                                         **({"seed": args.seed} if args.seed is not None else {})))
    settings = {"order": args.order} if args.order is not None else None
    compare(args.models, budget_seconds=args.budget_seconds, out=args.out, config=config,
            model_settings=settings, prompt=args.prompt, samples=args.samples,
            max_new_tokens=args.max_new_tokens, temperature=args.temperature, seeds=args.seeds,
            overwrite=args.overwrite,
            progress=not args.quiet)
    return 0


def add_parser(sub) -> None:
    from ..config import TrainConfig

    p = sub.add_parser("compare", help="train several models on the same data and budget; one table",
                       description="Train each model on the same split, tokenizer and training-time "
                                   "budget, then write compare.md, compare.csv and compare.png (runs in "
                                   "OUT/runs/NAME).")
    p.add_argument("--data", default="shakespeare", help="corpus, file or folder (shakespeare)")
    p.add_argument("--models", default="markov,lstm,gru", help="comma-separated names (markov,lstm,gru)")
    p.add_argument("--budget-seconds", type=float, default=60.0, help="training seconds per model (60)")
    p.add_argument("--tokenizer", default="char", help="char (default), word, ...")
    p.add_argument("--block-size", type=int, default=128, help="tokens per window (128)")
    p.add_argument("--order", type=int, help="n-gram order of markov models")
    p.add_argument("--prompt", help="prompt of the samples (default: the start of the training text)")
    p.add_argument("--samples", type=int, default=3, help="samples per model for memorisation (3)")
    p.add_argument("--max-new-tokens", type=int, default=300)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, help=f"training seed of every model ({TrainConfig.seed})")
    p.add_argument("--seeds", help="train each model once per seed and report medians and the spread: a count "
                                   "from --seed (5), a range (1-5) or a list (1,7,42)")
    p.add_argument("--out", default="compare", help="report folder (compare)")
    p.add_argument("--overwrite", action="store_true", help="replace runs already in OUT/runs")
    add_machine_flags(p, training=True)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
