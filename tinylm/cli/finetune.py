"""`tinylm finetune`: fine-tune a pretrained causal LM (GPT-2, a Hub model, a folder, a GPT run) on a text.

The flags are generated from FinetuneConfig and the text's part of DataConfig (cli/_fields.py); --lora-targets, a
list, is written by hand (comma-separated)."""

from __future__ import annotations

import argparse

from ._fields import ConfigFlags, add_config_flags, given
from ._machine import MACHINE_FLAGS, add_machine_flags, apply_threads

DATA_FIELDS = ("source", "val_source", "val_fraction", "encoding", "text_column", "hf_split", "hf_config")
"""The DataConfig fields a fine-tune reads (its blocks and line mode are FinetuneConfig's)."""


def add_parser(sub) -> None:
    from ..config import DataConfig
    from ..training.finetune import FinetuneConfig

    p = sub.add_parser(
        "finetune", help="fine-tune GPT-2 or another pretrained causal LM with the HF Trainer",
        description="Fine-tune a pretrained causal language model with the Hugging Face Trainer. The result "
                    "is a run directory like any other (sample, eval, push, serve).")
    p.add_argument("--base", required=True,
                   help="gpt2, a Hub model name, a local transformers folder, or a tinylm GPT run")
    flags: ConfigFlags = {}
    flags |= add_config_flags(p.add_argument_group("data"), DataConfig, "data", only=DATA_FIELDS,
                              names={"source": ["--data"], "val_source": ["--val-data"]},
                              extra={"source": {"required": True}})
    training = p.add_argument_group("training")
    flags |= add_config_flags(training, FinetuneConfig, "finetune", skip=(*MACHINE_FLAGS, "lora_targets"))
    # A list field (generated flags take tuples only), written comma-separated as module names read best.
    training.add_argument("--lora-targets", type=_names, metavar="NAMES", default=None,
                          help="names of the modules that get adapters, comma-separated (with --lora; default: "
                               "peft's choice for the architecture, GPT-2: c_attn)")
    flags["lora_targets"] = ("finetune", "lora_targets")
    g = p.add_argument_group("run directory")
    g.add_argument("--out", help="run directory (default runs/<data>-<base>-<time>)")
    g.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    add_machine_flags(p, training=True, defaults=False)
    flags |= {name: ("finetune", name) for name in MACHINE_FLAGS}
    p.set_defaults(_config_flags=flags)


def _names(text: str) -> list[str]:
    """`c_attn,c_proj` -> ["c_attn", "c_proj"] (FinetuneConfig refuses empty names)."""
    return text.split(",")


def configs_from_args(args: argparse.Namespace):
    """The DataConfig and FinetuneConfig of the flags given (the configs' defaults for the others)."""
    from ..config import DataConfig
    from ..training.finetune import FinetuneConfig

    values = given(args, args._config_flags)
    return DataConfig(**values["data"]), FinetuneConfig(**values["finetune"])


def run(args: argparse.Namespace) -> int:
    from ..training.finetune import finetune

    data, config = configs_from_args(args)
    apply_threads(args)
    if args.quiet:  # also the bars transformers draws while it loads and saves weights
        from transformers.utils import logging

        logging.disable_progress_bar()
    finetune(args.base, data, out=args.out, config=config, overwrite=args.overwrite, progress=not args.quiet)
    return 0
