"""The formats of the JSON files a run directory (or a prepared corpus) holds, and how older ones are upgraded.

Every such file carries its format version; a reader calls `upgrade(kind, data, path)` on what it read and gets
the current format back, whatever version wrote it:

    config.json / tinylm_config.json  "format_version"  1: epochs 1_000_000 meant "until the budget"
                                                         2: epochs null means it (current)
    checkpoint/state.json             "format_version"  0: no version (tinylm before run directories had one)
                                                         1: versioned (current)
    tokens.json (tinylm prepare)      "version"         1 (current)

An upgrade is a function from one version's dict to the next one's, so a file of any earlier version climbs
the chain one step at a time. The upgraded content is what the reader uses; the file itself is rewritten in
the current format only when the run is written again (a resume), so loading never changes a run on disk.
A file of a newer version than this tinylm knows is refused with a one-line error saying to upgrade tinylm.

To change a format: bump its entry in CURRENT, write `_<kind>_<old>_to_<new>` below and register it in UPGRADES,
and add a fixture run written before the change under tests/fixtures/ (tests/test_migrations.py loads them all).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import TinyLMError

CONFIG_JSON, STATE_JSON, TOKENS_JSON = "config", "state", "tokens"
"""The kinds of versioned JSON file (the file names themselves are tinylm.run.layout's)."""

CURRENT = {CONFIG_JSON: 2, STATE_JSON: 1, TOKENS_JSON: 1}
"""The version each kind of file is written in today."""

VERSION_KEY = {CONFIG_JSON: "format_version", STATE_JSON: "format_version", TOKENS_JSON: "version"}
FIRST_VERSION = {CONFIG_JSON: 1, STATE_JSON: 0, TOKENS_JSON: 1}
"""The version a file without a version key is taken to be (config.json has had one from the start)."""

_OLD_UNLIMITED_EPOCHS = 1_000_000  # how format 1 of config.json wrote "until the step or time budget runs out"


def _config_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    """Format 2 writes a run whose budget decides its epochs with `epochs: null` instead of 1_000_000. A run
    with that many epochs and no step or time budget (format 1 allowed it) keeps its number: `null` without a
    budget is refused, and a run a user already has must still load."""
    train = data.get("train")
    if isinstance(train, dict) and isinstance(train.get("epochs"), int) \
            and not isinstance(train["epochs"], bool) and train["epochs"] >= _OLD_UNLIMITED_EPOCHS \
            and (train.get("max_steps") is not None or train.get("time_budget") is not None):
        train["epochs"] = None
    return data


def _state_0_to_1(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 only adds the version: the counters are the same."""
    return data


UPGRADES: dict[str, dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    CONFIG_JSON: {1: _config_1_to_2},
    STATE_JSON: {0: _state_0_to_1},
    TOKENS_JSON: {},
}


def version_of(kind: str, data: dict[str, Any], path: str | Path) -> int:
    """The format version `data` (read from `path`) says it has; a damaged version is a one-line error."""
    version = data.get(VERSION_KEY[kind], FIRST_VERSION[kind])
    if isinstance(version, bool) or not isinstance(version, int) or version < FIRST_VERSION[kind]:
        raise TinyLMError(f"{path} is damaged (its {VERSION_KEY[kind]} is {version!r})")
    if version > CURRENT[kind]:
        raise TinyLMError(f"{path} was written by a newer tinylm (format {version}; this one reads up to "
                          f"{CURRENT[kind]}): upgrade tinylm to load it")
    return version


def upgrade(kind: str, data: Any, path: str | Path) -> Any:
    """`data` (the JSON object read from `path`) in the current format of its kind; a copy when anything changed.
    What is not a JSON object is returned as it is, for the reader's own checks to refuse."""
    if not isinstance(data, dict):
        return data
    version = version_of(kind, data, path)
    if version == CURRENT[kind]:
        return data
    data = copy.deepcopy(data)
    while version < CURRENT[kind]:
        data = UPGRADES[kind][version](data)
        version += 1
    data[VERSION_KEY[kind]] = version
    return data


def stamp(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """`data` with the current format version of its kind, to be written."""
    return {VERSION_KEY[kind]: CURRENT[kind], **{k: v for k, v in data.items() if k != VERSION_KEY[kind]}}
