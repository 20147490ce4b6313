"""The `tinylm` command: argument parsing only. Every subcommand calls one function of the Python API.

User mistakes (TinyLMError) print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import TinyLMError


def _add_train(sub) -> None:
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
    g.add_argument("--target", choices=["every", "last"],
                   help="every: predict at every position; last: many-to-one, the token after each window")
    g.add_argument("--block-size", "--maxlen", dest="block_size", type=int, help="tokens per window (128)")
    g.add_argument("--stride", "--step", dest="stride", type=int,
                   help="tokens between windows (default: block size; 3 with --target last)")
    g = p.add_argument_group("tokenizer")
    g.add_argument("--tokenizer", help="char (default)")
    g.add_argument("--vocab-size", type=int, help="vocabulary size of learned tokenizers")
    g.add_argument("--min-freq", type=int, help="minimum count of a symbol to enter the vocabulary (1)")
    g = p.add_argument_group("model")
    g.add_argument("--model", help="rnn, gru or lstm (default lstm)")
    g.add_argument("--preset", help="a named recipe: exercise (the maxlen-40 many-to-one LSTM of the char-RNN exercise)")
    g.add_argument("--layers", type=int)
    g.add_argument("--hidden", type=int)
    g.add_argument("--embed", type=int)
    g.add_argument("--dropout", type=float)
    g.add_argument("--head", choices=["linear", "mlp"], help="output head of recurrent models")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, help="epochs in total (5)")
    g.add_argument("--max-steps", type=int, help="stop after this many optimizer steps in total")
    g.add_argument("--batch-size", type=int, help="windows per batch (64)")
    g.add_argument("--lr", type=float, help="peak learning rate (3e-3)")
    g.add_argument("--optimizer", choices=["adam", "adamw"])
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--lr-schedule", choices=["constant", "cosine"])
    g.add_argument("--warmup-steps", type=int)
    g.add_argument("--grad-clip", type=float, help="clip the gradient norm (1.0; 0 disables)")
    g.add_argument("--patience", type=int, help="early stopping patience in epochs (5; 0 disables)")
    g.add_argument("--seed", type=int)
    g.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (auto)")
    g.add_argument("--precision", choices=["auto", "bf16", "fp32"], help="training autocast (auto: bf16 where fast)")
    g.add_argument("--eval-batch-size", type=int)
    g.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps within an epoch")
    g.add_argument("--sample-prompt", help="prompt of the sample printed after each epoch")
    g.add_argument("--sample-tokens", type=int, help="length of the sample printed after each epoch (200)")
    g = p.add_argument_group("run directory")
    g.add_argument("--out", help="run directory (default runs/<data>-<model>-<time>)")
    g.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    g.add_argument("--resume", metavar="RUN", help="continue RUN until it has --epochs epochs in total")
    g.add_argument("--threads", type=int, help="CPU threads for torch")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


_DATA_FLAGS = ["source", "val_source", "val_fraction", "encoding", "text_column", "hf_split", "hf_config",
               "target", "block_size", "stride"]
_TOKENIZER_FLAGS = ["vocab_size", "min_freq"]
_MODEL_FLAGS = ["layers", "hidden", "embed", "dropout", "head"]
_TRAIN_FLAGS = ["epochs", "max_steps", "batch_size", "lr", "optimizer", "weight_decay", "lr_schedule",
                "warmup_steps", "grad_clip", "patience", "seed", "device", "precision", "eval_batch_size", "checkpoint_every",
                "sample_prompt", "sample_tokens"]


def config_from_args(args: argparse.Namespace):
    """A RunConfig from defaults, then the preset, then the flags the user gave."""
    from .config import PRESETS, DataConfig, RunConfig, TrainConfig
    from .models import model_config
    from .tokenizers import TokenizerConfig

    args.source, args.val_source = args.data, args.val_data
    preset = {}
    if args.preset:
        if args.preset not in PRESETS:
            raise TinyLMError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[args.preset]

    def pick(section: str, names: list[str]) -> dict:
        values = dict(preset.get(section, {}))
        values.update({n: getattr(args, n) for n in names if getattr(args, n) is not None})
        return values

    model_values = pick("model", _MODEL_FLAGS)
    name = args.model or model_values.pop("name", "lstm")
    model_values.pop("name", None)
    train_values = pick("train", _TRAIN_FLAGS)
    if args.max_steps is not None and args.epochs is None and "epochs" not in preset.get("train", {}):
        train_values["epochs"] = 1_000_000  # a step budget alone decides when to stop
    tokenizer_values = pick("tokenizer", _TOKENIZER_FLAGS)
    if args.tokenizer:
        tokenizer_values["kind"] = args.tokenizer
    return RunConfig(
        data=DataConfig(**pick("data", _DATA_FLAGS)),
        tokenizer=TokenizerConfig(**tokenizer_values),
        model=model_config(name, **model_values),
        train=TrainConfig(**train_values),
    )


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from .training import resume, train

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        ignored = [f"--{n.replace('_', '-')}" for n in _DATA_FLAGS[2:] + _MODEL_FLAGS + _TRAIN_FLAGS[2:]
                   if getattr(args, n, None) is not None] + (["--data"] if args.data else [])
        if ignored:
            print(f"note: --resume continues with the run's own config; ignored: {' '.join(ignored)}", file=sys.stderr)
        resume(args.resume, epochs=args.epochs, max_steps=args.max_steps, progress=not args.quiet)
    else:
        train(config_from_args(args), out=args.out, overwrite=args.overwrite, progress=not args.quiet)
    return 0


def _add_sampling(p) -> None:
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--prompt", default="", help="text to continue (default: start a new text)")
    p.add_argument("--max-new-tokens", type=int, default=300)
    p.add_argument("--temperature", type=float, default=1.0, help="< 1 safer, > 1 more surprising (1.0)")
    p.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    p.add_argument("--top-p", type=float, help="sample among the most likely tokens holding probability p")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--seed", type=int, help="makes sampling repeatable")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--device", default="cpu")


def cmd_sample(args: argparse.Namespace) -> int:
    from .generation import SamplingConfig
    from .runs import load

    run = load(args.run, device=args.device)
    if args.num_samples < 1:
        raise TinyLMError("--num-samples must be at least 1")
    for i in range(args.num_samples):
        config = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                top_k=args.top_k, top_p=args.top_p, greedy=args.greedy,
                                seed=None if args.seed is None else args.seed + i)
        if i:
            print("\n" + "-" * 40)
        sys.stdout.write(args.prompt)
        sys.stdout.flush()
        for piece in run.stream(args.prompt, config=config):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .data import load_corpus
    from .runs import load

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


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="tinylm", description="Train, sample and evaluate small language models.")
    parser.add_argument("--version", action="version", version=f"tinylm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    p = sub.add_parser("sample", help="generate text from a run", description="Generate text, streamed to stdout.")
    _add_sampling(p)
    p = sub.add_parser("eval", help="loss, perplexity and bits per character of a run")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--text", help="evaluate on this file instead of the run's validation split")
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--json", action="store_true", help='print {"loss", "perplexity", "bits_per_char", "tokens"}')
    p.add_argument("--device", default="cpu")
    return parser


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TinyLMError as e:
        from .training import Interrupted

        print(f"{'' if isinstance(e, Interrupted) else 'error: '}{e}", file=sys.stderr)
        return 130 if isinstance(e, Interrupted) else 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `tinylm sample ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
