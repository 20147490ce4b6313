"""The one exception type for mistakes a user can fix (bad flags, missing files, bad data), and the checks
every config dataclass shares (its values' types, its choices).

The CLI prints a TinyLMError as a single line on stderr and exits with code 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


class TinyLMError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it."""


class NonFiniteScores(TinyLMError):
    """The model's next-token scores are NaN or infinite (damaged weights, or training diverged)."""


def check_choices(config) -> None:
    """Refuse a field of `config` (a dataclass) whose value is not one of those its class declares in
    `CHOICES` ({field: allowed values}): the one list the validation and the CLI's `choices=` both read."""
    for name, allowed in getattr(config, "CHOICES", {}).items():
        value = getattr(config, name)
        if value not in allowed:
            listed = ", ".join(allowed[:-1]) + f" or {allowed[-1]}" if len(allowed) > 1 else allowed[0]
            raise TinyLMError(f"--{name.replace('_', '-')} must be {listed}, got {value!r}")


def fits_type(value: Any, hint: Any) -> bool:
    """Whether `value` fits a dataclass field's type hint as JSON would carry it: an int is not a bool, a float
    field takes an int, a tuple field a list of the right length."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits_type(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and Ellipsis not in typing.get_args(hint) and len(value) != len(args):
            return False
        return all(fits_type(v, args[0] if len(args) == 1 else a) for v, a in zip(value, args or [Any] * len(value)))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is list:
        return isinstance(value, list)
    return True  # a type this check does not know: left to the dataclass's own validation


def type_name(hint: Any) -> str:
    """A type hint as a person reads it: "int", "float | None"."""
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "").replace("NoneType", "None")


def check_types(config) -> None:
    """Refuse a field of `config` (a dataclass) whose value is not of its declared type: the first check of
    every config's __post_init__, so a config built in Python (`model_config("lstm", hidden="8")`) is refused in
    words, as one read from a file is (tinylm.config.check_fields)."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if not fits_type(value, hints[field.name]):
            raise TinyLMError(f"{field.name} is {value!r}: expected {type_name(hints[field.name])}")
