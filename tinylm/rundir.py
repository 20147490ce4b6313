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

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, folders are still written whole
    fcntl = None

TINYLM_CONFIG = "tinylm_config.json"
LOCK_SUFFIX = ".lock"

# What a run directory may hold: the files and folders tinylm writes into it (training, its loggers, fine-tunes,
# the Lightning bridge). A folder holding anything else is someone's, and is never replaced.
RUN_ENTRIES = frozenset({
    "config.json", TINYLM_CONFIG, "model.safetensors", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
    "generation_config.json", "metrics.jsonl", "samples.jsonl", "summary.json", "loss.png", "steps.csv",
    "epochs.csv", "checkpoint", "checkpoint.tmp", "checkpoint.old", "tensorboard", "wandb", "trainer",
    "lightning_logs", "README.md", "tinylm",
})


# -- modes and durability ---------------------------------------------------------------------------------
def current_umask() -> int:
    """The process's umask: from /proc on Linux (reading it there changes nothing, so threads are safe), else
    by setting it and putting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from open(): 0666 less the umask."""
    return 0o666 & ~current_umask()


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make the entries of `folder` (new names, renames) durable."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


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
    return folder / TINYLM_CONFIG if (folder / TINYLM_CONFIG).is_file() else folder / "config.json"


def is_run(folder: str | os.PathLike) -> bool:
    """Whether `folder` is a tinylm run directory (its config says it was written by tinylm)."""
    try:
        data = json.loads(run_config_file(Path(folder)).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and "tinylm_version" in data


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


def check_output_file(path: str | os.PathLike, flag: str = "--out") -> None:
    """Refuse an output file that is a folder or a device, FIFO or socket (a regular file is replaced whole)."""
    path = Path(path)
    if path.is_dir():
        raise TinyLMError(f"{flag} {path} is a folder; give a file name, e.g. {flag} {path / 'plot.png'}")
    if path.exists() and not path.is_file():
        raise TinyLMError(f"{flag} {path} is not a regular file")
    if path.parent.exists() and not path.parent.is_dir():
        raise TinyLMError(f"{flag} {path}: {path.parent} is not a folder")


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
def hold(folder: str | os.PathLike, enabled: bool = True) -> Iterator[None]:
    """Hold `folder` for writing while the block runs: a second tinylm command that writes it is refused.

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
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise TinyLMError(f"cannot write beside {folder}: {path} ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
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
