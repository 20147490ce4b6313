"""How a course check runs and speaks: the student's object against tinylm's own version of the same thing, on
small inputs, every finding one line in German with a hint where something is wrong.

A task is registered with `@task(name, title, hint)` on a function `run(value, **context) -> Iterator[Finding]`
that yields what it found. `check(name, value, **context)` prints the report and returns what the notebook goes on
with: the student's object when every finding holds, else the task's fallback (tinylm's version), so an
unfinished Aufgabe still runs to its end.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

OK, WRONG, OPEN = "✓", "✗", "…"


@dataclass(frozen=True)
class Finding:
    """One thing a check looked at: whether it holds, what it is (German), and a hint when it does not."""

    holds: bool
    text: str
    hint: str = ""


class NotDone(Exception):
    """The student's part is still the Aufgabe's placeholder (None, `...`, or it raises NotImplementedError)."""


@dataclass(frozen=True)
class Task:
    name: str
    title: str  # "Aufgabe d – CharDataset"
    hint: str  # what to do when the part is not done yet
    run: Callable[..., Iterator[Finding]]
    fallback: Callable[..., Any] | None = None  # (value, **context) -> what the notebook goes on with


@dataclass
class Report:
    """What `check` found for one task: `status` is "ok", "wrong" or "open" (not done yet)."""

    task: Task
    status: str
    findings: list[Finding] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def text(self) -> str:
        head = {"ok": f"{OK} {self.task.title}: richtig",
                "wrong": f"{WRONG} {self.task.title}: noch nicht richtig",
                "open": f"{OPEN} {self.task.title}: noch nicht bearbeitet. Tipp: {self.task.hint}"}[self.status]
        lines = [head]
        for finding in self.findings:
            lines.append(f"   {OK if finding.holds else WRONG} {finding.text}")
            if not finding.holds and finding.hint:
                lines.append(f"     Tipp: {finding.hint}")
        if self.note:
            lines.append(f"   → {self.note}")
        return "\n".join(lines)


TASKS: dict[str, Task] = {}


def task(name: str, title: str, hint: str, fallback: Callable[..., Any] | None = None):
    """Register a check: `run(value, **context)` yields Findings; it may raise NotDone."""
    def register(run: Callable[..., Iterator[Finding]]) -> Callable[..., Iterator[Finding]]:
        TASKS[name] = Task(name, title, hint, run, fallback)
        return run
    return register


def not_done(value: Any) -> bool:
    """Whether `value` is still an Aufgabe's placeholder."""
    return value is None or value is Ellipsis or (isinstance(value, tuple) and any(not_done(v) for v in value))


def evaluate(name: str, value: Any, **context: Any) -> Report:
    """Run task `name` on `value`: the report, never an exception (an error in the student's code is a finding)."""
    if name not in TASKS:
        raise KeyError(f"unknown course task {name!r}; the tasks are: {', '.join(TASKS)}")
    spec = TASKS[name]
    findings: list[Finding] = []
    try:
        if not_done(value):
            raise NotDone
        for finding in spec.run(value, **context):
            findings.append(finding)
    except (NotDone, NotImplementedError):
        return Report(spec, "open", findings)
    except Exception as e:  # noqa: BLE001 - the student's code failed: that is what the check reports
        findings.append(Finding(False, f"dein Code bricht ab: {_where(e)}",
                                "lies die Fehlermeldung, probiere die Zelle einzeln aus und prüfe Formen und Typen"))
    return Report(spec, "ok" if findings and all(f.holds for f in findings) else "wrong", findings)


def _where(error: Exception) -> str:
    """The error and the last line of the student's code it came from."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)  # the student's own lines, not a library's
              if not any(part in f.filename.replace("\\", "/") for part in ("/tinylm/", "site-packages"))]
    where = f" (Zeile {frames[-1].lineno}: {frames[-1].line})" if frames and frames[-1].line else ""
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}{where}"


def check(name: str, value: Any = None, **context: Any) -> Any:
    """Check the student's `value` for course task `name` and print what is right and what is not. Returns what
    the notebook goes on with: `value` when the check holds, else the task's fallback where it has one (tinylm's
    version, said in the report), else `value`."""
    report = evaluate(name, value, **context)
    result = value
    if not report.ok and report.task.fallback is not None:
        result = report.task.fallback(value, **context)
        report.note = "damit die nächsten Zellen laufen, nimmt das Notebook vorerst tinylms Version"
    print(report.text())
    return result


def same(got: Any, expected: Any) -> bool:
    try:
        return bool(got == expected)
    except Exception:  # noqa: BLE001 - e.g. comparing arrays of different shapes
        return False
