"""`tinylm train`: a new run from flags, or `--resume RUN`.

The config flags are generated from the config dataclasses' fields and their docstrings (cli/_fields.py); only
the names that differ from `--field-name` and the flags that set no config field are written here."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import TinyLMError
from ._fields import ConfigFlags, add_config_flags, given
from ._machine import MACHINE_FLAGS, add_machine_flags

FLAG_NAMES = {"source": ["--data"], "val_source": ["--val-data"], "block_size": ["--block-size", "--maxlen"],
              "stride": ["--stride", "--step"], "kind": ["--tokenizer"]}
"""Flags whose name is not the field's (the first names the flag, the others are aliases kept from the classic
char-RNN exercise)."""
MODEL_FIELDS_SET_ELSEWHERE = ("vocab_size", "block_size", "cell")
"""Model fields with no flag: set from the tokenizer, from the data's --block-size, and by --model (gru, lstm)."""
def add_parser(sub) -> None:
    from ..config import DataConfig, TrainConfig
    from ..models import FAMILIES, MODEL_NAMES
    from ..tokenizers import TokenizerConfig
    from ..training.presets import DEFAULT_PRESET, PRESETS

    p = sub.add_parser("train", help="train a model (default: char-level LSTM on Tiny Shakespeare)",
                       description="Train a new run, or continue one with --resume RUN --epochs N. The defaults "
                                   "shown are the configs' own; a preset (--preset, or `default` when neither "
                                   "--preset nor --model is given) sets some of them first.")
    flags: ConfigFlags = {}
    flags |= add_config_flags(p.add_argument_group("data"), DataConfig, "data", names=FLAG_NAMES)
    flags |= add_config_flags(p.add_argument_group("tokenizer"), TokenizerConfig, "tokenizer", names=FLAG_NAMES)
    g = p.add_argument_group("model")
    g.add_argument("--model", help=f"a model name: {', '.join(MODEL_NAMES)} (default lstm)")
    g.add_argument("--preset", help=f"a named recipe (flags you give override it): {', '.join(PRESETS)}; "
                                    f"{DEFAULT_PRESET} is used when neither --preset nor --model is given "
                                    "(tinylm/training/presets.py)")
    # The families `--model` can make; a field several have (layers, embed, dropout) is one flag for all.
    trainable = {family: names for family in FAMILIES
                 if (names := [n for n, named in MODEL_NAMES.items() if named.family == family])}
    flags |= add_config_flags(g, [FAMILIES[family].config for family in trainable], "model",
                              skip=MODEL_FIELDS_SET_ELSEWHERE,
                              labels={FAMILIES[family].config: ", ".join(names) for family, names in trainable.items()})
    g = p.add_argument_group("training")
    machine = (*MACHINE_FLAGS, "processes")  # TrainConfig fields declared by add_machine_flags below
    flags |= add_config_flags(g, TrainConfig, "train", skip=machine,
                              extra={"time_budget": {"metavar": "SECONDS"}})
    g = p.add_argument_group("run directory")
    g.add_argument("--out", help="run directory (default runs/<data>-<model>-<time>)")
    g.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    g.add_argument("--resume", metavar="RUN", help="continue RUN until it has --epochs epochs in total")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    add_machine_flags(p, training=True, defaults=False, processes=True)
    flags |= {name: ("train", name) for name in machine}
    p.set_defaults(_config_flags=flags)


def config_from_args(args: argparse.Namespace):
    """A RunConfig from defaults, then the preset, then the flags the user gave."""
    from ..config import DataConfig, RunConfig, TrainConfig
    from ..data.sources import is_line_corpus
    from ..models import model_config
    from ..tokenizers import TokenizerConfig
    from ..training.presets import DEFAULT_PRESET, PRESETS

    name = args.preset or (DEFAULT_PRESET if not args.model else None)
    preset = {}
    if name:
        if name not in PRESETS:
            raise TinyLMError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[name]
    flags = given(args, args._config_flags)
    source = flags.get("data", {}).get("source") or preset.get("data", {}).get("source") or DataConfig.source
    lines = args.lines if args.lines is not None else is_line_corpus(source)
    if not args.preset and preset and (lines or args.target == "last"):
        # no single stream to carry state: without it the first run's short windows would cut lines and context
        preset = {**preset, "train": {k: v for k, v in preset["train"].items() if k != "stateful"},
                  "data": {k: v for k, v in preset.get("data", {}).items() if k != "block_size"}}

    def pick(section: str) -> dict:
        return {**preset.get(section, {}), **flags.get(section, {})}

    model_values = pick("model")
    name = args.model or model_values.pop("name", "lstm")
    model_values.pop("name", None)
    train_values = pick("train")
    if args.max_steps is not None and args.epochs is None and "epochs" not in preset.get("train", {}):
        train_values["epochs"] = None  # a step budget alone decides when to stop
    return RunConfig(
        data=DataConfig(**pick("data")),
        tokenizer=TokenizerConfig(**pick("tokenizer")),
        model=model_config(name, **model_values),
        train=TrainConfig(**train_values),
    )


def _relaunch(processes: int, args: argparse.Namespace) -> int:
    """Run this same command as `processes` DDP processes through PyTorch's torchrun launcher, each with its
    share of the cores (unless --threads says otherwise)."""
    from torch.distributed.run import main as torchrun

    from ..machine.devices import default_threads

    if not args.threads:
        os.environ["OMP_NUM_THREADS"] = str(default_threads(processes))
    try:
        torchrun(["--standalone", "--nproc_per_node", str(processes), "-m", "tinylm", *args._argv])
    except Exception as e:  # noqa: BLE001 - torchrun raises ChildFailedError after the workers printed why
        if type(e).__name__ != "ChildFailedError":
            raise
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    from ..training import resume, train

    launched = "LOCAL_RANK" in os.environ  # already one of torchrun's processes
    if args.resume:
        from ..config import RunConfig

        saved = Path(args.resume) / "config.json"
        processes = args.processes or (RunConfig.load(saved).train.processes if saved.is_file() else 1)
        config = None
    else:
        config = config_from_args(args)
        processes = config.train.processes
    if processes > 1 and not launched:
        from ..machine.devices import check_processes

        check_processes(processes)  # before the launcher starts any
    if processes > 1 and not launched and getattr(args, "_argv", None) is not None:
        return _relaunch(processes, args)
    if not launched:
        from ..machine.devices import apply_threads

        apply_threads(args.threads, processes)
    if args.resume:
        from ..training.loop import MACHINE_FIELDS

        taken = (*MACHINE_FIELDS, "epochs", "max_steps")  # what a resumed run may change
        ignored = [f"--{dest.replace('_', '-')}" for dest, (_, name) in args._config_flags.items()
                   if getattr(args, dest) is not None and name not in taken]
        ignored += [f"--{name}" for name in ("model", "preset", "out", "overwrite") if getattr(args, name)]
        if ignored:
            print(f"note: --resume continues with the run's own config; ignored: {' '.join(ignored)}", file=sys.stderr)
        resume(args.resume, epochs=args.epochs, max_steps=args.max_steps, progress=not args.quiet,
               **{name: getattr(args, name) for name in MACHINE_FIELDS})
    else:
        if not args.preset and not args.model and os.environ.get("RANK", "0") == "0":  # rank 0 speaks
            print("preset default: the first-run recipe (see tinylm/training/presets.py); --model lstm for the plain "
                  "defaults")
        train(config, out=args.out, overwrite=args.overwrite, progress=not args.quiet)
    return 0
