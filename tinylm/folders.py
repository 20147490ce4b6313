"""Folder safety: which output folder may be replaced, how a folder appears whole, who holds it. Every command
that writes a folder (a run, a prepared corpus, an export, a report, a fine-tune, a Hub dry run) writes it through
these four steps, declared once per kind of folder (an `OutputKind` beside the module that owns that kind) and run
by one call, `writing_output`:

- check (`check_output`, `check_output_file`, `check_apart`): an output folder is replaced only when it is empty or
  holds what the same command wrote before (a run, a prepared corpus, an export, a report), nothing else; never `.`,
  a parent of the working directory, the home folder, a mount point or a symbolic link; never the folder a command
  reads, one inside it or one holding it.
- lock (`hold`): one process at a time writes a folder: a lock file beside it holds the owner's pid; the lock is an
  flock, which the kernel drops when its process dies, so the file a killed process leaves behind is stale and is
  taken over. A lock file that is a symbolic link is refused, never followed.
- stage and swap (`writing_folder`): a folder is written in a staging folder with a unique name beside it,
  fsync'ed, then renamed into place; the folder it replaces is moved aside first and removed last, so a kill at any
  moment leaves the old folder or the new one, whole.
- clean (`clean_stale`): temporary files of killed processes (staging folders, `checkpoint.tmp`, `checkpoint.old`,
  `.NAME.*.tmp`) are removed by the next command that holds the folder.

New files and folders get the user's umask (0666 / 0777 masked), like any other program's.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import TinyLMError
from .io import fsync_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, folders are still written whole
    fcntl = None
LOCK_SUFFIX = ".lock"


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
                 held: str | None = None, keep: Iterable[str] = ()) -> None:
    """Refuse an output folder tinylm may not write or replace; no side effects.

    `what` names the kind of folder ("a tinylm run"), `is_same_kind` recognises one, `allowed` lists the entries
    such a folder holds (others mean the folder is someone's), `hint` is added to the refusal without --overwrite,
    `held` names what the folder holds in that refusal (default: `what`), and a folder holding only entries of
    `keep` (which the new folder takes over) counts as empty."""
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
        entries = [entry for entry in out.iterdir() if entry.name not in set(keep)]
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


def check_output_file(path: str | os.PathLike, flag: str = "--out",
                      reserved: Callable[[Path], bool] = lambda path: False) -> None:
    """Refuse an output file (a PNG: the plots tinylm draws) that is a folder, a device, FIFO or socket, one that
    `reserved` names (a run's own file: tinylm.run.layout.is_run_file), or an existing file that is not a PNG: a file
    is replaced only by one of its own kind."""
    path = Path(path)
    if path.is_dir():
        raise TinyLMError(f"{flag} {path} is a folder; give a file name, e.g. {flag} {path / 'plot.png'}")
    if path.parent.exists() and not path.parent.is_dir():
        raise TinyLMError(f"{flag} {path}: {path.parent} is not a folder")
    if path.suffix.lower() != ".png":
        raise TinyLMError(f"{flag} {path}: the plot is a PNG image; give a file name ending in .png")
    if reserved(path):
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
def writing_folder(out: str | os.PathLike, keep: Iterable[str] = ()) -> Iterator[Path]:
    """Yield an empty staging folder beside `out`; when the block ends without an error it replaces `out`
    whole (the entries of `out` named in `keep` moved into it first), else it is removed and `out` is untouched.
    Hold the folder (`hold`) around it."""
    out = Path(out)
    clean_stale(out)
    staging = make_dir(unique_sibling(out, "tmp"))
    try:
        yield staging
        for name in keep:
            if (out / name).exists() and not (staging / name).exists():
                os.replace(out / name, staging / name)
        replace_folder(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


# -- the kinds of output folder, and the one call that writes each -------------------------------------------
@dataclass(frozen=True)
class OutputKind:
    """A kind of folder a command writes, declared once by the module that owns it (tinylm.run.layout.RUN_FOLDER,
    tinylm.data.tokenfile.PREPARED_FOLDER, ...): how it is named in messages, how an earlier one is recognised
    (`is_same_kind`), the entries it may hold (others mean the folder is someone's: None, any), and what the
    refusal adds (`hint`, `held`)."""

    what: str
    is_same_kind: Callable[[Path], bool]
    allowed: frozenset[str] | None = None
    held: str | None = None
    hint: str = ""

    def check(self, out: str | os.PathLike, overwrite: bool, flag: str = "--out", hint: str | None = None,
              keep: Iterable[str] = ()) -> None:
        """Refuse `out` unless this command may write or replace it (check_output); no side effects."""
        check_output(Path(out), what=self.what, is_same_kind=self.is_same_kind, overwrite=overwrite,
                     allowed=self.allowed, flag=flag, hint=self.hint if hint is None else hint, held=self.held,
                     keep=keep)


@contextmanager
def writing_output(kind: OutputKind, out: str | os.PathLike, *, overwrite: bool, flag: str = "--out",
                   hint: str | None = None, held: bool = False, keep: Iterable[str] = ()) -> Iterator[Path]:
    """Write the folder `out` of `kind` whole: check it, hold it (unless the caller already does: `held`), check
    again now that no other process writes it, then yield a staging folder that replaces `out` when the block
    ends without an error (taking over the old folder's entries named in `keep`). The one way tinylm writes an
    output folder."""
    kind.check(out, overwrite, flag, hint, keep)
    with hold(out, enabled=not held):
        kind.check(out, overwrite, flag, hint, keep)
        with writing_folder(out, keep=keep) as staging:
            yield staging


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
