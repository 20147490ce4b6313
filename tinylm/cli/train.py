"""`tinylm train`: a new run from flags, or `--resume RUN`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import TinyLMError
from ._machine import add_machine_flags


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (default: char-level LSTM on Tiny Shakespeare)",
                       description="Train a new run, or continue one with --resume RUN --epochs N.")
    g = p.add_argument_group("data")
    g.add_argument("--data", help="file, folder of .txt, built-in corpus (shakespeare, wikitext2, NAME:SPLIT) "
                                  "or hf:DATASET (default: shakespeare)")
    g.add_argument("--val-data", help="validation text from another source (default: the last --val-fraction)")
    g.add_argument("--val-fraction", type=float, help="share of the text, at its end, used for validation (0.1)")
    g.add_argument("--encoding", help="encoding of text files (utf-8)")
    g.add_argument("--text-column", help="column of a Hugging Face dataset (text)")
    g.add_argument("--hf-split", help="split of a Hugging Face dataset (train)")
    g.add_argument("--hf-config", help="configuration of a Hugging Face dataset")
    g.add_argument("--strip-gutenberg", action="store_true", default=None,
                   help="cut the Project Gutenberg licence header and footer off the text file(s)")
    g.add_argument("--lines", action="store_true", default=None,
                   help="one sample per line: each ends with <eos>, lines are never cut or joined")
    g.add_argument("--target", choices=["every", "last"],
                   help="every: predict at every position; last: many-to-one, the token after each window")
    g.add_argument("--block-size", "--maxlen", dest="block_size", type=int, help="tokens per window (128)")
    g.add_argument("--stride", "--step", dest="stride", type=int,
                   help="tokens between windows (default: block size; 3 with --target last)")
    g = p.add_argument_group("tokenizer")
    g.add_argument("--tokenizer", help="char (default), word, bpe, or a transformers tokenizer name or folder "
                                       "(e.g. gpt2)")
    g.add_argument("--vocab-size", type=int, help="vocabulary size of learned tokenizers")
    g.add_argument("--min-freq", type=int, help="minimum count of a symbol to enter the vocabulary (1)")
    g = p.add_argument_group("model")
    g.add_argument("--model", help="a registered model name: rnn, gru, lstm, ... (default lstm)")
    g.add_argument("--preset", help="a named recipe (flags you give override it): default (used when neither "
                                    "--preset nor --model is given), exercise, gpt-cpu, cpu-best, ...; "
                                    "see tinylm/presets.py")
    g.add_argument("--layers", type=int)
    g.add_argument("--hidden", type=int)
    g.add_argument("--embed", type=int)
    g.add_argument("--dropout", type=float)
    g.add_argument("--head", choices=["linear", "mlp"], help="output head of recurrent models")
    g.add_argument("--heads", type=int, help="attention heads (Transformer models)")
    g.add_argument("--positions", choices=["learned", "rope"], help="GPT positions: learned (GPT-2) or rotary")
    g.add_argument("--norm", choices=["layernorm", "rmsnorm"], help="GPT norms: layernorm (GPT-2) or rmsnorm")
    g.add_argument("--qk-norm", action=argparse.BooleanOptionalAction, help="GPT: RMS-normalise queries and keys")
    g.add_argument("--activation", choices=["gelu", "relu2"], help="GPT MLP activation: gelu (GPT-2) or ReLU squared")
    g.add_argument("--tie-head", action=argparse.BooleanOptionalAction,
                   help="GPT: the output head is the token embedding (default; --no-tie-head: a head of its own)")
    g.add_argument("--zero-init-proj", action=argparse.BooleanOptionalAction,
                   help="GPT: residual output projections (and an untied head) start at zero")
    g.add_argument("--bias", action=argparse.BooleanOptionalAction, help="GPT: biases in Linear and LayerNorm (on)")
    g.add_argument("--order", type=int, help="n-gram order (Markov models)")
    g.add_argument("--smoothing", choices=["kneser-ney", "witten-bell"], help="n-gram smoothing (Markov models)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, help="epochs in total (5)")
    g.add_argument("--max-steps", type=int, help="stop after this many optimizer steps in total")
    g.add_argument("--batch-size", type=int, help="windows per batch (64)")
    g.add_argument("--lr", type=float, help="peak learning rate (3e-3)")
    g.add_argument("--optimizer", choices=["adam", "adamw", "muon"],
                   help="adamw (default), adam, or muon: Muon for the hidden matrices, AdamW at --lr for the rest")
    g.add_argument("--muon-lr", type=float, help="peak learning rate of Muon (--optimizer muon; 0.03)")
    g.add_argument("--fused", action=argparse.BooleanOptionalAction, help="Adam/AdamW through torch's fused kernel")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--lr-schedule", choices=["constant", "cosine", "linear"],
                   help="after warm-up: constant (default), or cosine / linear decay to --min-lr-ratio x lr")
    g.add_argument("--min-lr-ratio", type=float, help="where cosine and linear decay end, as a share of --lr (0.1)")
    g.add_argument("--warmup-steps", type=int)
    g.add_argument("--grad-clip", type=float, help="clip the gradient norm (1.0; 0 disables)")
    g.add_argument("--patience", type=int, help="early stopping patience in epochs (5; 0 disables)")
    g.add_argument("--seed", type=int)
    g.add_argument("--eval-batch-size", type=int)
    g.add_argument("--stateful", action="store_true", default=None,
                   help="recurrent models: carry the state from batch to batch (truncated BPTT over streams)")
    g.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="stop training after this many seconds, then evaluate and keep the best checkpoint")
    g.add_argument("--logger", help="experiment tracker: none (default), csv, tensorboard, wandb")
    g.add_argument("--wandb-project", help="W&B project (default: tinylm)")
    g.add_argument("--run-name", help="name of the run in the tracker (default: the run directory name)")
    g.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps within an epoch")
    g.add_argument("--sample-prompt", help="prompt of the sample printed after each epoch")
    g.add_argument("--sample-tokens", type=int, help="length of the sample printed after each epoch (200)")
    g = p.add_argument_group("run directory")
    g.add_argument("--out", help="run directory (default runs/<data>-<model>-<time>)")
    g.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    g.add_argument("--resume", metavar="RUN", help="continue RUN until it has --epochs epochs in total")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    machine = add_machine_flags(p, training=True, defaults=False)
    machine.add_argument(
        "--processes", type=int, help="train with N processes on this machine (DDP through torchrun's launcher; "
                                      "default 1)")


_DATA_FLAGS = ["source", "val_source", "val_fraction", "encoding", "text_column", "hf_split", "hf_config",
               "lines", "target", "block_size", "stride", "strip_gutenberg"]
_TOKENIZER_FLAGS = ["vocab_size", "min_freq"]
_MODEL_FLAGS = ["layers", "hidden", "embed", "dropout", "head", "heads", "order", "smoothing", "positions", "norm",
                "qk_norm", "activation", "tie_head", "zero_init_proj", "bias"]
_TRAIN_FLAGS = ["epochs", "max_steps", "batch_size", "lr", "optimizer", "muon_lr", "fused", "weight_decay",
                "lr_schedule", "min_lr_ratio",
                "warmup_steps", "grad_clip", "patience", "seed", "device", "precision", "eval_batch_size",
                "checkpoint_every",
                "sample_prompt", "sample_tokens", "stateful", "processes", "time_budget", "logger", "wandb_project",
                "run_name", "threads"]
_MACHINE_FLAGS = ["device", "precision", "threads", "processes"]  # may change on --resume (another machine)


def config_from_args(args: argparse.Namespace):
    """A RunConfig from defaults, then the preset, then the flags the user gave."""
    from ..config import UNLIMITED_EPOCHS, DataConfig, RunConfig, TrainConfig
    from ..models import model_config
    from ..presets import DEFAULT_PRESET, PRESETS, resolve_preset
    from ..tokenizers import TokenizerConfig

    args.source, args.val_source = args.data, args.val_data
    name = args.preset or (DEFAULT_PRESET if not args.model else None)
    preset = {}
    if name:
        if name not in PRESETS:
            raise TinyLMError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        name, note = resolve_preset(name, args.precision)
        if note and os.environ.get("RANK", "0") == "0":
            print(note)
        preset = PRESETS[name]
    if not args.preset and preset and (args.lines or args.target == "last"):  # no single stream to carry state
        preset = {**preset, "train": {k: v for k, v in preset["train"].items() if k != "stateful"}}

    def pick(section: str, names: list[str]) -> dict:
        values = dict(preset.get(section, {}))
        values.update({n: getattr(args, n) for n in names if getattr(args, n) is not None})
        return values

    model_values = pick("model", _MODEL_FLAGS)
    name = args.model or model_values.pop("name", "lstm")
    model_values.pop("name", None)
    train_values = pick("train", _TRAIN_FLAGS)
    if args.max_steps is not None and args.epochs is None and "epochs" not in preset.get("train", {}):
        train_values["epochs"] = UNLIMITED_EPOCHS  # a step budget alone decides when to stop
    tokenizer_values = pick("tokenizer", _TOKENIZER_FLAGS)
    if args.tokenizer:
        tokenizer_values["kind"] = args.tokenizer
    return RunConfig(
        data=DataConfig(**pick("data", _DATA_FLAGS)),
        tokenizer=TokenizerConfig(**tokenizer_values),
        model=model_config(name, **model_values),
        train=TrainConfig(**train_values),
    )


def _relaunch(processes: int, args: argparse.Namespace) -> int:
    """Run this same command as `processes` DDP processes through PyTorch's torchrun launcher, each with its
    share of the cores (unless --threads says otherwise)."""
    from torch.distributed.run import main as torchrun

    from ..devices import default_threads

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
    if processes > 1 and not launched and getattr(args, "_argv", None) is not None:
        return _relaunch(processes, args)
    if not launched:
        from ..devices import apply_threads

        apply_threads(args.threads, processes)
    if args.resume:
        ignored = [f"--{n.replace('_', '-')}" for n in _DATA_FLAGS[2:] + _MODEL_FLAGS + _TRAIN_FLAGS[2:]
                   if getattr(args, n, None) is not None and n not in _MACHINE_FLAGS]
        ignored += ["--data"] if args.data else []
        if ignored:
            print(f"note: --resume continues with the run's own config; ignored: {' '.join(ignored)}", file=sys.stderr)
        resume(args.resume, epochs=args.epochs, max_steps=args.max_steps, progress=not args.quiet,
               **{n: getattr(args, n) for n in _MACHINE_FLAGS})
    else:
        if not args.preset and not args.model and os.environ.get("RANK", "0") == "0":  # rank 0 speaks
            print("preset default: the first-run recipe (see tinylm/presets.py); --model lstm for the plain "
                  "defaults")
        train(config, out=args.out, overwrite=args.overwrite, progress=not args.quiet)
    return 0
