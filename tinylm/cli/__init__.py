"""The `tinylm` command: argument parsing only; every subcommand calls one function of the Python API.

Each subcommand lives in its own module of this package with two functions:
    add_parser(subparsers)   registers the subcommand and its flags (the parser's `name` is the command)
    run(args) -> int         calls the API
Modules are found automatically, so a feature adds a command by adding a file here.

User mistakes (TinyLMError) print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # as typed: a command may relaunch itself
    try:
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
