"""Command-line flags generated from config dataclasses, as litgpt and simple_parsing do it: each field's flag,
type, choices and help come from the field itself and the docstring written under it, so a setting is declared
once, in its config.

A field `block_size: int = 128` with the docstring "Tokens per training window." under it becomes
`--block-size N` (type int) with the help "tokens per training window (default 128)". Every flag defaults to None
in argparse, so a command tells "not given" from a value (presets and --resume depend on it); `given()` collects
the values that were given, by config section.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import re
import sys
import types
import typing
from typing import Any, Iterable, Sequence

ConfigFlags = dict[str, tuple[str, str]]
"""argparse dest -> (config section, field name): what each generated flag sets."""


def _class_node(config: type) -> ast.ClassDef | None:
    """The syntax tree of a top-level class, parsed from its lines of its module's source only (parsing whole
    modules, as inspect.getsource(class) does, costs ~0.1 s at every start of the command)."""
    try:
        lines = inspect.getsource(sys.modules[config.__module__]).splitlines(keepends=True)
    except (OSError, TypeError, KeyError):  # no source to read (a frozen install): the flags keep their names only
        return None
    starts = [i for i, line in enumerate(lines) if re.match(rf"class {config.__qualname__}\b", line)]
    if len(starts) != 1:
        return None
    end = next((i for i in range(starts[0] + 1, len(lines)) if lines[i][:1] not in ("", " ", "\t", "\n", "#")),
               len(lines))
    try:
        node = ast.parse("".join(lines[starts[0]:end])).body[0]
    except SyntaxError:
        return None
    return node if isinstance(node, ast.ClassDef) else None


@functools.cache
def field_docs(config: type) -> dict[str, str]:
    """The docstring written under each field of the dataclass `config` (the string literal that follows the
    field in the class body), read from the class's source."""
    docs: dict[str, str] = {}
    for klass in reversed(config.__mro__):  # a subclass's docstring replaces its base's
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        node = _class_node(klass)
        body = node.body if node is not None else []
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def first_sentence(text: str) -> str:
    """The first sentence of `text` on one line, without its full stop (a '.' inside parentheses, as in
    "(e.g. gpt2)", or one not followed by a capital letter does not end it)."""
    text = " ".join(text.split())
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "." and depth <= 0 and (i + 1 == len(text) or text[i + 1:i + 3].strip()[:1].isupper()):
            return text[:i]
    return text


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def default_text(value: Any) -> str:
    """A field's default as a user would type it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return " ".join(default_text(v) for v in value)
    return str(value) if value != "" else '""'


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def describe(config: type, field: dataclasses.Field, flags: dict[str, str] | None = None, *,
             required: bool = False) -> str:
    """The help of `field`: the first sentence of its docstring, then "(default X)" from its default (left out
    when the default is None, the flag is required, or the sentence already says what the default is). `flags`
    maps field names to their flags, so that "`lr`" in a docstring reads "--lr"."""
    text = first_sentence(field_docs(config).get(field.name, ""))
    text = re.sub(r"`(\w+)`", lambda m: (flags or {}).get(m.group(1), m.group(0)), text)
    word = text.split(" ", 1)[0]
    if word[:1].isupper() and (len(word) == 1 or word[1:].islower()):  # "Peak ..." -> "peak ...", not "rMS", "adamW"
        text = text[0].lower() + text[1:]
    default = _field_default(field)
    if default is not None and not required and not re.search(r"\bdefault\b", text):
        text = f"{text} (default {default_text(default)})".strip()
    return text.replace("%", "%%")  # argparse formats help with %


def argparse_kwargs(hint: Any, field: str = "") -> dict[str, Any]:
    """type / nargs / action / choices for a field of type `hint`: int, float, str, bool, tuples of them,
    Literal[...], each optionally `| None`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        arms = [arm for arm in typing.get_args(hint) if arm is not type(None)]
        if len(arms) == 1:
            return argparse_kwargs(arms[0], field)
    elif hint is bool:
        return {"action": argparse.BooleanOptionalAction}  # --x and --no-x: a flag can undo a preset's setting
    elif hint in (int, float):
        return {"type": hint}
    elif hint is str:
        return {}
    elif origin is typing.Literal:
        values = typing.get_args(hint)
        return {"choices": values, "type": type(values[0])}
    elif origin is tuple:
        items = [item for item in typing.get_args(hint) if item is not Ellipsis]
        if len(set(items)) == 1 and items[0] in (int, float, str):  # tuple[float, float], tuple[int, ...]
            if Ellipsis in typing.get_args(hint):
                return {"type": items[0], "nargs": "+"}
            stem = field.upper().removesuffix("S") or "VALUE"  # --betas BETA1 BETA2
            metavar = tuple(f"{stem}{i}" for i in range(1, len(items) + 1))
            return {"type": items[0], "nargs": len(items), "metavar": metavar}
    raise TypeError(f"no command-line flag for a field of type {hint} ({field})")


def add_config_flags(group, configs: type | Sequence[type], section: str, *, only: Iterable[str] | None = None,
                     skip: Iterable[str] = (), names: dict[str, Sequence[str]] | None = None,
                     extra: dict[str, dict] | None = None,
                     labels: dict[type, str] | None = None) -> ConfigFlags:
    """Add a flag to `group` (a parser or argument group) for each field of `configs` (one dataclass, or several
    whose fields are united by name, e.g. the model families' configs) and return what each flag sets.

    only / skip: the fields to take or leave out; names: a field's flags when not --field-name (the first names
    the dest, the others are aliases); extra: more add_argument keywords of a field (metavar, required); a
    field's choices are those its config declares (CHOICES, which its validation checks); labels: a prefix for
    the help of each config when there are several ("gpt: attention heads per block")."""
    configs = [configs] if isinstance(configs, type) else list(configs)
    names, extra, labels = names or {}, extra or {}, labels or {}
    only, skip = (None if only is None else list(only)), set(skip)
    fields: dict[str, list[tuple[type, dataclasses.Field]]] = {}
    for config in configs:
        for field in dataclasses.fields(config):
            if field.name not in skip and (only is None or field.name in only):
                fields.setdefault(field.name, []).append((config, field))
    if only is not None:
        missing = set(only) - set(fields)
        if missing:
            raise TypeError(f"{', '.join(c.__name__ for c in configs)} has no field {', '.join(sorted(missing))}")
        fields = {name: fields[name] for name in only}
    flags_of = {name: (names.get(name) or [flag_name(name)])[0] for name in fields}
    hints = {config: typing.get_type_hints(config) for config in configs}  # once per config, not per field
    made: ConfigFlags = {}
    for name, owners in fields.items():
        kwargs: dict[str, Any] = {}
        helps = []
        for config, field in owners:
            kind = argparse_kwargs(hints[config][name], name)
            declared = getattr(config, "CHOICES", {}).get(name)
            if declared:
                kind["choices"] = tuple(declared)
            if kwargs and kind != kwargs:
                raise TypeError(f"field {name!r} has different types in {', '.join(c.__name__ for c, _ in owners)}")
            kwargs = kind
            text = describe(config, field, flags_of, required=extra.get(name, {}).get("required", False))
            helps.append(f"{labels[config]}: {text}" if config in labels else text)
        flags = list(names.get(name) or [flag_name(name)])
        dest = flags[0].removeprefix("--").replace("-", "_")
        group.add_argument(*flags, dest=dest, default=None, help="; ".join(dict.fromkeys(helps)),
                           **{**kwargs, **extra.get(name, {})})
        made[dest] = (section, name)
    return made


def given(args: argparse.Namespace, flags: ConfigFlags) -> dict[str, dict[str, Any]]:
    """The values of the flags in `flags` that were given, by section: {"train": {"lr": 0.01}, ...}."""
    values: dict[str, dict[str, Any]] = {section: {} for section, _ in flags.values()}
    for dest, (section, name) in flags.items():
        value = getattr(args, dest, None)
        if value is not None:
            values[section][name] = value
    return values
