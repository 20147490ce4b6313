"""Atomic file writes: a crash never leaves a half-written checkpoint, metrics file or report.

Every write goes to a temporary file in the same folder (created with the user's umask, like any other
program's files), is fsync'ed, then renamed over the target (rename is atomic on POSIX), and the folder itself
is fsync'ed so the rename survives a power cut. Temporaries a killed process leaves (.NAME.*.tmp) are removed
by the next command that holds the folder (tinylm.folders.clean_stale).
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import TinyLMError


def as_path(value: Any, what: str) -> Path:
    """`value` (a str or os.PathLike, not empty) as a Path; anything else is a TinyLMError naming `what`: the
    first check of the public functions that take a folder or a file."""
    if isinstance(value, (str, os.PathLike)) and os.fspath(value) != "":
        return Path(value)
    raise TinyLMError(f"{what} must be a path (a str or pathlib.Path), got {value!r}")


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


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success it replaces `target` atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode())  # the umask's mode, as open() would give (mkstemp's and safetensors' 0600)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
        fsync_dir(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(target: str | os.PathLike, records: list[dict]) -> None:
    write_text(target, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def append_jsonl(target: str | os.PathLike, record: dict) -> None:
    """Append one JSON line by rewriting the file atomically (these files are small: one line per epoch)."""
    write_jsonl(target, read_jsonl(target) + [record])


def read_jsonl(path: str | os.PathLike, required: dict[str, type] | None = None) -> list[dict]:
    """The records of a JSON-lines file ([] when it is absent); each line must be a JSON object, with the
    `required` keys of the given types. A damaged file is a TinyLMError naming the file and the line."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise TinyLMError(f"{path} is damaged (not UTF-8 text: {e.reason})") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise TinyLMError(f"{path} is damaged: line {number} is not valid JSON ({e})") from None
        if not isinstance(record, dict):
            raise TinyLMError(f"{path} is damaged: line {number} is not a JSON object")
        for key, kind in (required or {}).items():
            value = record.get(key)
            if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
                raise TinyLMError(f"{path} is damaged: line {number} has no {kind.__name__} {key!r}")
        records.append(record)
    return records
