"""The layout of a run directory: the names of its files, what makes a folder a run, where a new one goes, and
which data its config may make tinylm read (a run from the Hub reads no local file its config names).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from ..errors import TinyLMError
from ..folders import OutputKind

# -- the files of a run ------------------------------------------------------------------------------
CONFIG = "config.json"  # the run's config (a fine-tune's config.json is transformers', tinylm's is below)
TINYLM_CONFIG = "tinylm_config.json"  # tinylm's config in a run whose config.json is transformers' (fine-tunes)
WEIGHTS = "model.safetensors"  # the best weights so far
METRICS = "metrics.jsonl"  # one record per evaluated epoch
SAMPLES = "samples.jsonl"  # the sample written after each epoch
SUMMARY = "summary.json"  # written once, when training ends
LOSS_PLOT = "loss.png"
CHECKPOINT = "checkpoint"  # weights, optimizer, RNG and state.json: what --resume continues from
ADAPTER = "adapter"  # a LoRA fine-tune's adapter (peft's save_pretrained), beside the merged weights

# What a run directory may hold: the files and folders tinylm writes into it (training, its loggers, fine-tunes,
# the Lightning bridge). A folder holding anything else is someone's, and is never replaced.
RUN_ENTRIES = frozenset({
    CONFIG, TINYLM_CONFIG, WEIGHTS, "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
    "generation_config.json", METRICS, SAMPLES, SUMMARY, LOSS_PLOT, "steps.csv",
    "epochs.csv", CHECKPOINT, f"{CHECKPOINT}.tmp", f"{CHECKPOINT}.old", "tensorboard", "wandb", "trainer",
    "lightning_logs", "lightning", "README.md", "tinylm", ADAPTER,
})


# -- what a folder is ---------------------------------------------------------------------------------
def run_config_file(folder: Path) -> Path:
    """Where a run keeps tinylm's config: tinylm_config.json in a fine-tune, config.json in other runs."""
    folder = Path(folder)
    return folder / TINYLM_CONFIG if (folder / TINYLM_CONFIG).is_file() else folder / CONFIG


def is_run_config(path: str | os.PathLike) -> bool:
    """Whether the JSON file `path` is a config written by tinylm (config.json or tinylm_config.json)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and "tinylm_version" in data


def is_run(folder: str | os.PathLike) -> bool:
    """Whether `folder` is a tinylm run directory (its config says it was written by tinylm): the one test of it."""
    return is_run_config(run_config_file(Path(folder)))


def is_run_file(path: str | os.PathLike) -> bool:
    """Whether `path` is one of a run directory's own files (an output file must never replace it)."""
    path = Path(path)
    return path.parent.is_dir() and is_run(path.parent) and path.name in RUN_ENTRIES


def default_run_dir(source: str, model_name: str) -> Path:
    """runs/<data>-<model>-<time>: where a run goes without --out."""
    from datetime import datetime

    data = Path(source.replace("hf:", "")).stem or "data"
    return Path("runs") / f"{data}-{Path(model_name).name or 'model'}-{datetime.now():%Y%m%d-%H%M%S}"


RUN_FOLDER = OutputKind("a tinylm run", is_run, RUN_ENTRIES, held="a run")
"""A run directory as an output folder: every engine's (tinylm's loop, fine-tuning, Lightning) and the Hub's."""


def check_run_output(out: str | os.PathLike, overwrite: bool, resumable: bool = True) -> None:
    """Refuse an --out for a new run that is a file, a foreign folder, another run (unless overwrite), `.`, a
    parent of the working directory, a mount point or a symbolic link (check_output). No side effects."""
    RUN_FOLDER.check(out, overwrite, hint=f", or --resume {out}" if resumable else "")


def default_sample_prompt(text: str, lines: bool) -> str:
    """The prompt of the sample written after each epoch when none is given: in line mode none (a new line, from
    <eos>); else the opening words of the training text (its first line, at most 32 characters)."""
    return "" if lines else text.lstrip()[:32].split("\n")[0] or text[:8]


# -- the data a run names ---------------------------------------------------------------------------------
SPECIAL_ROOTS = ("/dev", "/proc", "/sys")
NOT_PATHS = ("hf:", "gutenberg:")


def _special(path: Path) -> str | None:
    """Why reading `path` as a corpus is refused (a device, a FIFO, a socket, a kernel file), or None."""
    resolved = path.resolve()
    if any(resolved == Path(root) or Path(root) in resolved.parents for root in SPECIAL_ROOTS):
        return f"{resolved} is a system file"
    try:
        mode = resolved.stat().st_mode
    except OSError:
        return None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return f"{resolved} is not a regular file (a device, FIFO or socket)"
    return None


def check_readable_source(source: str, flag: str = "--data") -> None:
    """Refuse a data path that names a device, FIFO, socket or kernel file (reading one may hang or leak)."""
    if not isinstance(source, str) or source.startswith(NOT_PATHS):
        return
    reason = _special(Path(source).expanduser())
    if reason:
        raise TinyLMError(f"{flag} {source}: {reason}; give a text file or a folder of .txt files")


def data_source(source: str | None, run_dir: Path, *, from_hub: bool) -> tuple[str | None, str | None]:
    """The data a run's config names, made safe to read: (source to read, or None; why it is not read).

    A built-in corpus, hf:NAME (a Hub dataset) or gutenberg:ID is read as named. A local path is read only from a
    local run: relative to the run directory when it is there, else as written (an absolute path the run was
    trained with), never a device, FIFO, socket or kernel file. A run downloaded from the Hub reads no local file
    its config names: a stranger's config.json decides nothing on this machine."""
    if not source:
        return source, None
    if source.startswith("hf:"):
        name = source[3:]
        if from_hub and (name.startswith(("/", ".", "~")) or Path(name).expanduser().exists()):
            return None, f"it names the local dataset folder {name!r}"
        return source, None
    if source.startswith("gutenberg:"):
        return source, None
    path = Path(source).expanduser()
    local = path.is_absolute() or "/" in source or os.sep in source or (run_dir / source).exists() \
        or path.exists()
    if not local:
        return source, None  # a built-in corpus name
    if from_hub:
        return None, f"it names the local path {source!r}"
    if not path.is_absolute() and (run_dir / path).exists():
        path = run_dir / path
    reason = _special(path)
    if reason:
        return None, reason
    return str(path), None
