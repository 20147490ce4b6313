"""`tinylm finetune`: fine-tune a pretrained causal LM (GPT-2, a Hub model, a folder, a GPT run) on a text."""

from __future__ import annotations

import argparse

from ._machine import add_machine_flags, apply_threads


def add_parser(sub) -> None:
    p = sub.add_parser(
        "finetune", help="fine-tune GPT-2 or another pretrained causal LM with the HF Trainer",
        description="Fine-tune a pretrained causal language model with the Hugging Face Trainer. The result "
                    "is a run directory like any other (sample, eval, push, serve).")
    p.add_argument("--base", required=True,
                   help="gpt2, a Hub model name, a local transformers folder, or a tinylm GPT run")
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True,
                   help="file, folder of .txt, built-in corpus (shakespeare, wikitext2, ...) or hf:DATASET")
    g.add_argument("--val-data", help="validation text from another source (default: the text's tail)")
    g.add_argument("--val-fraction", type=float, default=0.1, help="share of the text (its end) to validate")
    g.add_argument("--encoding", default="utf-8", help="encoding of text files")
    g.add_argument("--text-column", default="text", help="column of a Hugging Face dataset")
    g.add_argument("--hf-split", default="train", help="split of a Hugging Face dataset")
    g.add_argument("--hf-config", help="configuration of a Hugging Face dataset")
    g.add_argument("--block-size", type=int, help="tokens per block (128, or the base's context if shorter)")
    g.add_argument("--lines", action="store_true",
                   help="one example per line, ended by the tokenizer's end-of-text token, instead of blocks")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=3)
    g.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (AdamW, cosine decay)")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--patience", type=int, default=2, help="early stopping patience in epochs (0 disables)")
    g.add_argument("--warmup-steps", type=int, default=0)
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--seed", type=int, default=1337)
    g.add_argument("--logger", default="none",
                   help="none, csv, tensorboard or wandb (the keys `tinylm train` logs)")
    g.add_argument("--wandb-project", help="W&B project (default: tinylm)")
    g.add_argument("--run-name", help="name of the run in the tracker (default: the run directory name)")
    g.add_argument("--sample-prompt", help="prompt of the sample written after each epoch")
    g.add_argument("--sample-tokens", type=int, default=100, help="length of the sample after each epoch")
    g = p.add_argument_group("run directory")
    g.add_argument("--out", help="run directory (default runs/<data>-<base>-<time>)")
    g.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    add_machine_flags(p, training=True)


def run(args: argparse.Namespace) -> int:
    from ..config import DataConfig
    from ..finetune import FinetuneConfig, finetune

    data = DataConfig(source=args.data, val_source=args.val_data, val_fraction=args.val_fraction,
                      encoding=args.encoding, text_column=args.text_column, hf_split=args.hf_split,
                      hf_config=args.hf_config)
    config = FinetuneConfig(
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, block_size=args.block_size,
        lines=args.lines, patience=args.patience, warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay, seed=args.seed, logger=args.logger, wandb_project=args.wandb_project,
        run_name=args.run_name, sample_prompt=args.sample_prompt, sample_tokens=args.sample_tokens,
        device=args.device, precision=args.precision, threads=args.threads,
    )
    apply_threads(args)
    if args.quiet:  # also the bars transformers draws while it loads and saves weights
        from transformers.utils import logging

        logging.disable_progress_bar()
    finetune(args.base, data, out=args.out, config=config, overwrite=args.overwrite, progress=not args.quiet)
    return 0
