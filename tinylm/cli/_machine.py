"""The flags every command that trains or generates shares: --device, --precision, --threads. Their meaning
is decided in one place, tinylm/machine/devices.py; this only declares and applies them."""

from __future__ import annotations

import argparse

from ..machine.devices import GENERATION_PRECISIONS, TRAINING_PRECISIONS

MACHINE_FLAGS = ("device", "precision", "threads")
"""The dests of the flags add_machine_flags declares: the TrainConfig (and FinetuneConfig) fields of those names."""
TRAINING_HELP = ("training autocast: auto (default: bf16 on GPUs that support it and on CPUs that compute bf16 "
                 "natively, checked by a probe step; else fp32), bf16, fp32")
GENERATION_HELP = ("generation: auto (default: the fastest path that agrees with fp32 on this machine), fp32 "
                   "(exact), bf16 (Linear layers in bf16), int8 (int8 weights, CPUs), llama.cpp (a GPT's q8_0 weights "
                   "run by llama.cpp, where llama-cpp-python is installed)")


def add_machine_flags(p: argparse.ArgumentParser, *, training: bool = False, defaults: bool = True,
                      processes: bool = False):
    """--device, --precision (training's or generation's choices) and --threads, in a "machine" group that is
    returned; with processes=True also --processes (TrainConfig.processes: `tinylm train`'s DDP processes). With
    defaults=False the flags default to None (train and --resume tell "not given" from a value)."""
    g = p.add_argument_group("machine")
    g.add_argument("--device", default="auto" if defaults else None,
                   help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    g.add_argument("--precision", choices=TRAINING_PRECISIONS if training else GENERATION_PRECISIONS,
                   default="auto" if defaults else None, help=TRAINING_HELP if training else GENERATION_HELP)
    g.add_argument("--threads", type=int,
                   help="CPU threads for torch (default: the physical cores" + (", shared among --processes)"
                                                                                if processes else ")"))
    if processes:
        from ..config import TrainConfig
        from ._fields import add_config_flags

        add_config_flags(g, TrainConfig, "train", only=["processes"])
    return g


def apply_threads(args: argparse.Namespace) -> int:
    """Set torch's threads from --threads (or the default); the one call every command makes."""
    from ..machine.devices import apply_threads as apply

    return apply(args.threads)
