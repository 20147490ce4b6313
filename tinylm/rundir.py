"""The rules of the folders tinylm writes: which may be replaced, how one appears whole, who holds it.

- An output folder is replaced only when it is empty or holds what the same command wrote before (a run, a
  prepared corpus, an export, a report), nothing else; never `.`, a parent of the working directory, the home
  folder, a mount point or a symbolic link (`check_output`).
- A folder is written in a staging folder with a unique name beside it, fsync'ed, then renamed into place; the
  folder it replaces is moved aside first and removed last, so a kill at any moment leaves the old folder or the
  new one, whole (`writing_folder`).
- One process at a time writes a folder: a lock file beside it holds the owner's pid; the lock is an flock,
  which the kernel drops when its process dies, so the file a killed process leaves behind is stale and is
  taken over (`hold`).
- New files and folders get the user's umask (0666 / 0777 masked), like any other program's.
- Temporary files of killed processes (staging folders, `checkpoint.tmp`, `checkpoint.old`, `.NAME.*.tmp`) are
  removed by the next command that holds the folder (`clean_stale`).
- The data a run's config names is read only after `data_source` has resolved it (see there).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import TinyLMError
from .io import append_jsonl, fsync_dir, read_jsonl, write_json, write_jsonl

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, folders are still written whole
    fcntl = None

# -- the files of a run ------------------------------------------------------------------------------
CONFIG = "config.json"  # the run's config (a fine-tune's config.json is transformers', tinylm's is below)
TINYLM_CONFIG = "tinylm_config.json"  # tinylm's config in a run whose config.json is transformers' (fine-tunes)
WEIGHTS = "model.safetensors"  # the best weights so far
METRICS = "metrics.jsonl"  # one record per evaluated epoch
SAMPLES = "samples.jsonl"  # the sample written after each epoch
SUMMARY = "summary.json"  # written once, when training ends
LOSS_PLOT = "loss.png"
CHECKPOINT = "checkpoint"  # weights, optimizer, RNG and state.json: what --resume continues from
LOCK_SUFFIX = ".lock"

# What a run directory may hold: the files and folders tinylm writes into it (training, its loggers, fine-tunes,
# the Lightning bridge). A folder holding anything else is someone's, and is never replaced.
RUN_ENTRIES = frozenset({
    CONFIG, TINYLM_CONFIG, WEIGHTS, "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
    "generation_config.json", METRICS, SAMPLES, SUMMARY, LOSS_PLOT, "steps.csv",
    "epochs.csv", CHECKPOINT, f"{CHECKPOINT}.tmp", f"{CHECKPOINT}.old", "tensorboard", "wandb", "trainer",
    "lightning_logs", "README.md", "tinylm",
})


# -- durability ---------------------------------------------------------------------------------------
def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under `folder` (before it is renamed into place)."""
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        elif path.is_dir():
            fsync_dir(path)
    fsync_dir(folder)


def unique_sibling(target: Path, suffix: str) -> Path:
    """A name beside `target` that no other process picks: .NAME.<random>.<suffix>."""
    return target.parent / f".{target.name}.{secrets.token_hex(6)}.{suffix}"


def make_dir(path: Path) -> Path:
    """Create the folder `path` (its parents too) with the umask's mode; it must not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o777)
    return path


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


def foreign_entries(folder: Path, allowed: Iterable[str], name: str = "") -> list[str]:
    """Entries of `folder` that the command writing it would not have written (our own temporaries aside)."""
    allowed = set(allowed)
    return sorted(p.name for p in folder.iterdir()
                  if p.name not in allowed and not (p.name.startswith(".") and p.name.endswith((".tmp", ".old"))))


def _protected(path: Path) -> str | None:
    """Why `path` may never be replaced by tinylm, or None."""
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd:
        return "is the current folder"
    if resolved in cwd.parents:
        return "is a parent of the current folder"
    if resolved == Path.home().resolve():
        return "is the home folder"
    if resolved.exists() and os.path.ismount(resolved):
        return "is a mount point (it cannot be replaced; write to a folder inside it)"
    return None


def check_output(out: Path, *, what: str, is_same_kind: Callable[[Path], bool], overwrite: bool,
                 allowed: Iterable[str] | None = None, flag: str = "--out", hint: str = "",
                 held: str | None = None) -> None:
    """Refuse an output folder tinylm may not write or replace; no side effects.

    `what` names the kind of folder ("a tinylm run"), `is_same_kind` recognises one, `allowed` lists the entries
    such a folder holds (others mean the folder is someone's), `hint` is added to the refusal without --overwrite,
    and `held` names what the folder holds in that refusal (default: `what`)."""
    out = Path(out)
    if out.is_symlink():
        raise TinyLMError(f"{flag} {out} is a symbolic link (to {os.readlink(out)}); give the folder itself")
    if out.exists() and not out.is_dir():
        raise TinyLMError(f"{flag} {out} exists and is not a folder")
    reason = _protected(out)
    if reason:
        raise TinyLMError(f"{flag} {out} {reason}; choose a new folder, e.g. {flag} {out / 'out'}"
                          if "mount point" not in reason else f"{flag} {out} {reason}")
    if not out.is_dir():
        return
    try:
        entries = list(out.iterdir())
    except PermissionError:
        raise TinyLMError(f"{flag} {out} is not readable; choose another folder") from None
    if not entries:
        return
    if not is_same_kind(out):
        raise TinyLMError(f"{flag} {out} exists, is not empty and is not {what}; choose another folder")
    foreign = foreign_entries(out, allowed) if allowed is not None else []
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise TinyLMError(f"{flag} {out} holds {what} and files tinylm did not write there ({shown}); it is not "
                          f"replaced: move them or choose another folder")
    if not overwrite:
        raise TinyLMError(f"{flag} {out} is not empty: it already holds {held or what}; pass --overwrite to "
                          f"replace it{hint}")


def default_run_dir(source: str, model_name: str) -> Path:
    """runs/<data>-<model>-<time>: where a run goes without --out."""
    from datetime import datetime

    data = Path(source.replace("hf:", "")).stem or "data"
    return Path("runs") / f"{data}-{Path(model_name).name or 'model'}-{datetime.now():%Y%m%d-%H%M%S}"


def check_run_output(out: str | os.PathLike, overwrite: bool, resumable: bool = True) -> None:
    """Refuse an --out for a new run that is a file, a foreign folder, another run (unless overwrite), `.`, a
    parent of the working directory, a mount point or a symbolic link (check_output). No side effects."""
    check_output(Path(out), what="a tinylm run", is_same_kind=is_run, overwrite=overwrite, allowed=RUN_ENTRIES,
                 hint=f", or --resume {out}" if resumable else "", held="a run")


def check_apart(out: str | os.PathLike, source: str | os.PathLike, out_flag: str, source_flag: str) -> None:
    """Refuse an output folder that is the folder a command reads (`source`), lies inside it, or holds it:
    writing or replacing it would change or delete what is being read."""
    out, source = Path(out), Path(source)
    if not source.exists():
        return
    out_real, source_real = out.resolve(), source.resolve()
    if out_real == source_real or source_real in out_real.parents:
        raise TinyLMError(f"{out_flag} {out} is {'' if out_real == source_real else 'inside '}{source_flag} "
                          f"{source}, which this command reads; write to another folder")
    if out_real in source_real.parents:
        raise TinyLMError(f"{out_flag} {out} holds {source_flag} {source}, which this command reads; write to "
                          f"another folder")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_output_file(path: str | os.PathLike, flag: str = "--out") -> None:
    """Refuse an output file (a PNG: the plots tinylm draws) that is a folder, a device, FIFO or socket, a file
    of a run, or an existing file that is not a PNG: a file is replaced only by one of its own kind."""
    path = Path(path)
    if path.is_dir():
        raise TinyLMError(f"{flag} {path} is a folder; give a file name, e.g. {flag} {path / 'plot.png'}")
    if path.parent.exists() and not path.parent.is_dir():
        raise TinyLMError(f"{flag} {path}: {path.parent} is not a folder")
    if path.suffix.lower() != ".png":
        raise TinyLMError(f"{flag} {path}: the plot is a PNG image; give a file name ending in .png")
    if path.parent.is_dir() and is_run(path.parent) and path.name in RUN_ENTRIES:
        raise TinyLMError(f"{flag} {path} is a file of the run in {path.parent}; write the plot elsewhere")
    if path.exists() or path.is_symlink():
        if not path.is_file() or path.is_symlink():
            raise TinyLMError(f"{flag} {path} is not a regular file")
        with open(path, "rb") as f:
            if f.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                raise TinyLMError(f"{flag} {path} exists and is not a PNG image; it is not replaced: choose "
                                  f"another file name")


# -- writing a folder whole ---------------------------------------------------------------------------------
def replace_folder(staging: Path, out: Path) -> None:
    """Put the complete folder `staging` in place of `out` (absent, empty, or one the caller may replace)."""
    fsync_tree(staging)
    if out.exists():
        old = unique_sibling(out, "old")
        os.replace(out, old)
        try:
            os.replace(staging, out)
        except OSError:
            os.replace(old, out)  # put the old folder back: nothing is lost
            raise
        fsync_dir(out.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)
    fsync_dir(out.parent)


@contextmanager
def writing_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder beside `out`; when the block ends without an error it replaces `out`
    whole, else it is removed and `out` is untouched. Hold the folder (`hold`) around it."""
    out = Path(out)
    clean_stale(out)
    staging = make_dir(unique_sibling(out, "tmp"))
    try:
        yield staging
        replace_folder(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def clean_stale(out: Path) -> None:
    """Remove what killed commands left beside `out` (staging folders, folders moved aside), and inside a run
    directory its temporary files and a `checkpoint.old` that a complete `checkpoint/` replaced. Call it only
    while holding `out`: then nothing of the kind belongs to a live process."""
    out = Path(out)
    if out.parent.is_dir():
        for path in out.parent.glob(f".{out.name}.*"):
            if path.suffix in (".tmp", ".old") and path.name != f".{out.name}{LOCK_SUFFIX}":
                _remove(path)
    if not out.is_dir():
        return
    if (out / "checkpoint.tmp").exists():
        _remove(out / "checkpoint.tmp")
    if (out / "checkpoint.old").exists() and (out / "checkpoint" / "state.json").is_file():
        _remove(out / "checkpoint.old")
    for folder in (out, out / "checkpoint"):
        if folder.is_dir():
            for path in folder.glob(".*.tmp"):  # io.atomic_path's temporaries
                _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# -- one writer at a time ---------------------------------------------------------------------------------
def lock_path(folder: Path) -> Path:
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}{LOCK_SUFFIX}"


def _owner(text: str) -> str:
    try:
        info = json.loads(text)
        return (f"process {info['pid']} on {info['host']}, started {info['started']}: "
                f"{info.get('command', '')}".rstrip(": "))
    except (ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def hold(folder: str | os.PathLike, enabled: bool = True, wait: bool = False) -> Iterator[None]:
    """Hold `folder` for writing while the block runs: a second tinylm command that writes it is refused (with
    `wait`, it waits for the first to finish instead: for a cache folder that both would write the same).

    The lock is .NAME.lock beside the folder (so it survives the folder being replaced), with the owner's pid,
    host and command; it is an flock, dropped by the kernel when the owner dies, so a lock file left by a killed
    process is stale and is taken over."""
    if not enabled or fcntl is None:
        yield
        return
    folder = Path(folder).resolve()
    path = lock_path(folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TinyLMError(f"cannot create {path.parent} ({e.strerror})") from None
    while True:
        if path.is_symlink():  # a lock file is tinylm's own: never written through a link to someone's file
            raise TinyLMError(f"the lock file {path} is a symbolic link (to {os.readlink(path)}); tinylm never "
                              f"writes through one: remove the link and try again")
        try:  # O_NOFOLLOW: a link put there between the check above and this open is refused too (ELOOP)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except OSError as e:
            raise TinyLMError(f"cannot write the lock file {path} beside {folder} ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 4096).decode("utf-8", "replace")
            os.close(fd)
            raise TinyLMError(f"{folder} is being written by {_owner(owner)}; wait for it to end (or stop it) "
                              f"and try again") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its previous owner removed the file between our open and our lock: take the new one
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(["tinylm", *sys.argv[1:]]) if sys.argv and "tinylm" in sys.argv[0] else ""}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        yield
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# -- writing a run while it trains ----------------------------------------------------------------------
PLOT_EVERY_SECONDS = 20.0
"""loss.png is redrawn after an epoch at most this often (a redraw costs 0.2-0.7 s, more than a short epoch's
training on a GPU), and always when training ends."""


def default_sample_prompt(text: str, lines: bool) -> str:
    """The prompt of the sample written after each epoch when none is given: in line mode none (a new line, from
    <eos>); else the opening words of the training text (its first line, at most 32 characters)."""
    return "" if lines else text.lstrip()[:32].split("\n")[0] or text[:8]


def epoch_record(*, epoch: int, step: int, train_loss: float | None, result, lr: float, tokens: float,
                 epoch_seconds: float, eval_seconds: float, elapsed_seconds: float, best: bool, steps_per_epoch: int,
                 curve: list, **extra) -> dict:
    """An evaluated epoch's metrics.jsonl record: `result` is its EvalResult on the whole validation split,
    `train_loss` the epoch's mean (None: a counting model), `tokens` those trained on, `curve` the running training
    loss ([step, loss] points); `extra` adds fields (val_context, wall_seconds, partial, world_size...)."""
    return {
        "epoch": epoch, "step": step,
        "train_loss": None if train_loss is None else round(train_loss, 6),
        "val_loss": round(result.loss, 6), "val_perplexity": round(result.perplexity, 4),
        "val_bits_per_char": round(result.bits_per_char, 5), "lr": lr,
        "tokens_per_s": round(tokens / max(epoch_seconds, 1e-9), 1), "epoch_seconds": round(epoch_seconds, 2),
        "eval_seconds": round(eval_seconds, 2), "elapsed_seconds": round(elapsed_seconds, 2), "best": best,
        "steps_per_epoch": steps_per_epoch, "train_curve": curve, **extra,
    }


def epoch_line(label: str, record: dict) -> str:
    """The line printed after an evaluated epoch, from its metrics record ("-": a counting model trains no loss)."""
    train = "-" if record.get("train_loss") is None else f"{record['train_loss']:.4f}"
    return (f"epoch {label}: train {train}  val {record['val_loss']:.4f}  ppl {record['val_perplexity']:.2f}  "
            f"bpc {record['val_bits_per_char']:.3f}  ({record['tokens_per_s']:,.0f} tok/s, "
            f"{record['epoch_seconds']:.1f} s)" + (" *best*" if record["best"] else ""))


class RunWriter:
    """Keeps a run directory up to date while a model trains: tinylm's loop and the fine-tuning Trainer (through
    a TrainerCallback, tinylm/finetune.py) both write through it, so their runs hold the same files and their
    loggers get the same keys.

    After each evaluated epoch (`end_epoch`): the best weights in model.safetensors (the folder holds the best
    model at every moment), the record in metrics.jsonl, the epoch's line, a sample from the fixed prompt in
    samples.jsonl, the logger's epoch (metrics and the samples table), loss.png. Every few steps (`log_step`):
    train/loss, train/lr, train/tokens_per_s to the logger. At the end (`finish`): summary.json (only when
    training ended well), loss.png, the logger closed. In a process other than the first of a multi-process run
    (`main=False`) it writes nothing and says nothing."""

    def __init__(self, run_dir: str | os.PathLike, logger, *, title: str, echo: Callable[[str], None] = print,
                 main: bool = True):
        self.run_dir, self.logger, self.title, self.main = Path(run_dir), logger, title, main
        self.echo = echo if main else (lambda line: None)
        self._plotted_at: float | None = None  # perf_counter() of the last loss.png redraw
        self._plotted_epochs = -1  # metrics records drawn then

    def start(self, config: dict, info: dict) -> None:
        """Before the first step: the logger gets the run's config and facts (parameters, device...)."""
        self.logger.start(config, info)

    def check(self) -> None:
        """Read what the run already holds (metrics.jsonl, samples.jsonl, the logger's own files), refusing a
        damaged file, before a resume writes anything."""
        if self.main:
            for name in (METRICS, SAMPLES):
                read_jsonl(self.run_dir / name, required={"epoch": int})
            self.logger.check()

    def redo_after(self, epoch: int) -> None:
        """Drop the records of epochs after `epoch` (written by a run killed before its checkpoint): a resume
        from that checkpoint writes them again."""
        for name in (METRICS, SAMPLES) if self.main else ():
            records = read_jsonl(self.run_dir / name, required={"epoch": int})
            if any(r["epoch"] > epoch for r in records):
                write_jsonl(self.run_dir / name, [r for r in records if r["epoch"] <= epoch])

    def log_step(self, step: int, loss: float, lr: float, tokens_per_s: float) -> None:
        self.logger.log_step(step, {"train/loss": loss, "train/lr": lr, "train/tokens_per_s": tokens_per_s})

    def end_epoch(self, record: dict, label: str, run, tc, keep_best: Callable[[Path], None]) -> dict | None:
        """Write an evaluated epoch: `record` is its metrics.jsonl record ("best" says whether it improved), `label`
        its number as shown ("3/5"), `run` the model as a LoadedModel (it writes the sample), `tc` the TrainConfig
        (the sample's prompt, length, temperature and seed), `keep_best(path)` saves the weights there. Returns
        the sample record (None in a process that does not write)."""
        if not self.main:
            return None
        if record["best"]:
            keep_best(self.run_dir / WEIGHTS)
        append_jsonl(self.run_dir / METRICS, record)
        self.echo(epoch_line(label, record))
        text = run.generate(tc.sample_prompt or "", max_new_tokens=tc.sample_tokens,
                            temperature=tc.sample_temperature, seed=tc.seed)
        self.echo("  sample: " + text.replace("\n", "\n          "))
        sample = {"epoch": record["epoch"], "prompt": tc.sample_prompt, "temperature": tc.sample_temperature,
                  "text": text}
        append_jsonl(self.run_dir / SAMPLES, sample)
        self.logger.log_epoch(record["epoch"], record["step"], record, sample)
        self.plot()
        return sample

    def plot(self, force: bool = False) -> None:
        """Redraw loss.png: after an epoch at most every PLOT_EVERY_SECONDS, and at the end of training unless
        nothing changed since."""
        from .plots import plot_loss

        now = time.perf_counter()
        if not self.main or (not force and self._plotted_at is not None
                             and now - self._plotted_at < PLOT_EVERY_SECONDS):
            return
        records = read_jsonl(self.run_dir / METRICS)
        if force and len(records) == self._plotted_epochs:
            return
        plot_loss(records, self.run_dir / LOSS_PLOT, title=self.title)
        self._plotted_at, self._plotted_epochs = time.perf_counter(), len(records)

    def finish(self, summary: dict, failed: bool = False) -> None:
        """The end of training, also after an error: summary.json and a last loss.png only when it ended well;
        the logger is closed either way."""
        try:
            if not failed and self.main:
                self.plot(force=True)
                write_json(self.run_dir / SUMMARY, summary)
        finally:
            self.logger.finish(summary, failed=failed)


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
