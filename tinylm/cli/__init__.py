"""The `tinylm` command: argument parsing only; every subcommand calls one function of the Python API.

Each subcommand lives in its own module of this package with two functions:
    add_parser(subparsers)   registers the subcommand and its flags (the parser's `name` is the command)
    run(args) -> int         calls the API
Modules are found automatically, so a feature adds a command by adding a file here.

User mistakes (TinyLMError), a missing optional extra and what the filesystem refuses (no space, read-only,
no permission) print one line on stderr and exit with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import pkgutil
import sys

from ..errors import TinyLMError

ORDER = ["train", "sample", "eval"]  # listed first in --help; the rest follow alphabetically


def _command_modules():
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return [importlib.import_module(f"{__name__}.{n}") for n in names]


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = argparse.ArgumentParser(prog="tinylm", description="Train, sample, evaluate, compare and publish "
                                                                "small language models.")
    parser.add_argument("--version", action="version", version=f"tinylm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _command_modules():
        before = set(sub.choices)
        module.add_parser(sub)
        for name in set(sub.choices) - before:
            sub.choices[name].set_defaults(_run=module.run)
    return parser


# Packages of the optional extras: a command that needs one that is not installed says which extra to install.
EXTRAS = {"transformers": "hf", "datasets": "hf", "accelerate": "hf", "huggingface_hub": "hf", "wandb": "tracking",
          "tensorboard": "tracking", "gradio": "app", "lightning": "lightning", "nbclient": "notebooks",
          "nbformat": "notebooks", "ipykernel": "notebooks", "gguf": "gguf", "onnx": "onnx", "onnxruntime": "onnx",
          "onnxruntime_genai": "onnx", "peft": "lora"}
# What the filesystem says when tinylm cannot write (or read) where the user pointed it.
FILESYSTEM_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR,
                     errno.EBUSY, errno.ENAMETOOLONG, errno.ELOOP, errno.EFBIG, errno.EMFILE}


def _filesystem_message(e: OSError) -> str:
    where = f" {e.filename}" if e.filename else ""
    other = f" -> {e.filename2}" if getattr(e, "filename2", None) else ""
    advice = {errno.ENOSPC: "; free some space and run the command again (what was written before is kept)",
              errno.EDQUOT: "; free some space and run the command again (what was written before is kept)",
              errno.EROFS: "; write to a writable folder (--out)", errno.EACCES: "; check the permissions",
              errno.EPERM: "; check the permissions"}.get(e.errno, "")
    return f"cannot access{where}{other}: {e.strerror or e}{advice}"


def check_values(args: argparse.Namespace) -> None:
    """Checks every command's flags share: text that is not valid UTF-8 (the shell passes bytes; Python keeps
    undecodable ones as lone surrogates, which no tokenizer or file can take), seeds past 64 bits, ports; and
    tinylm's environment switches."""
    for name, value in vars(args).items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and not name.startswith("_"):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise TinyLMError(f"--{name.replace('_', '-')} is not valid UTF-8 text") from None
    seed = getattr(args, "seed", None)
    if isinstance(seed, int) and not 0 <= seed < 2**32:  # epochs seed with seed x 1,000,003 + epoch
        raise TinyLMError(f"--seed must be a whole number from 0 to {2**32 - 1}, got {seed}")
    port = getattr(args, "port", None)
    if isinstance(port, int) and not 1 <= port <= 65535:
        raise TinyLMError(f"--port must be a port number from 1 to 65535, got {port}")
    from ..machine.devices import check_environment

    check_environment()


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        check_values(args)
        args._argv = list(sys.argv[1:] if argv is None else argv)  # as typed: a command may relaunch itself
        return args._run(args)
    except TinyLMError as e:
        from ..training import Interrupted

        print(f"{'' if isinstance(e, Interrupted) else 'error: '}{e}", file=sys.stderr)
        return 130 if isinstance(e, Interrupted) else 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `tinylm sample ... | head`
        sys.stderr.close()
        return 0
    except ModuleNotFoundError as e:
        package = (e.name or "").split(".")[0]
        if package not in EXTRAS:
            raise
        print(f"error: this command needs {package}, which is not installed: pip install 'tinylm[{EXTRAS[package]}]'",
              file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in FILESYSTEM_ERRORS:
            raise
        print(f"error: {_filesystem_message(e)}", file=sys.stderr)
        return 2
