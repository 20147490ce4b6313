"""Stage 3: model families behind one interface (see base.py), found by name.

Each family is one module of this package that defines
    FAMILY = ("name", ConfigDataclass, ModelClass)
    MODEL_NAMES = {"--model name": {fixed config fields}, ...}
and is registered here. `--model` names map to a family plus fixed config values (e.g. `gru` is the rnn
family with cell="gru"). A family whose optional dependency is missing is simply not registered.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, NamedTuple

from ..errors import TinyLMError
from .base import CountingModel, LanguageModel
from .rnn import RecurrentLM, RNNConfig

FAMILY_MODULES = ["rnn", "gpt", "markov", "hf"]
OPTIONAL_PACKAGES = {"transformers", "accelerate"}



class Family(NamedTuple):
    """A registered model family: the dataclass of its config and its model class (one file each)."""

    config: type
    model: type[LanguageModel]


class ModelName(NamedTuple):
    """What a --model NAME stands for: its family and the config fields the name fixes (lstm: cell="lstm")."""

    family: str
    fixed: dict[str, Any]


FAMILIES: dict[str, Family] = {}
MODEL_NAMES: dict[str, ModelName] = {}

for _module_name in FAMILY_MODULES:
    try:
        _module = importlib.import_module(f"{__name__}.{_module_name}")
    except ModuleNotFoundError as _e:  # a family not written yet, or its optional package missing
        if _e.name != f"{__name__}.{_module_name}" and (_e.name or "").split(".")[0] not in OPTIONAL_PACKAGES:
            raise
        continue
    _family, _config_class, _model_class = _module.FAMILY
    FAMILIES[_family] = Family(_config_class, _model_class)
    for _name, _fixed in _module.MODEL_NAMES.items():
        MODEL_NAMES[_name] = ModelName(_family, _fixed)


def family_of(config: Any) -> str:
    for family, registered in FAMILIES.items():
        if type(config) is registered.config:
            return family
    raise TypeError(f"{type(config).__name__} is not a registered model config")


def model_config(name: str, **overrides: Any) -> Any:
    """The config for a --model NAME with the given fields set (None values keep the defaults)."""
    if not isinstance(name, str) or name not in MODEL_NAMES:
        raise TinyLMError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    family, fixed = MODEL_NAMES[name]
    config_class = FAMILIES[family].config
    fields = {f.name for f in dataclasses.fields(config_class)}
    values = {k: v for k, v in overrides.items() if v is not None and k in fields}
    return config_class(**{**values, **fixed})


def model_name(config: Any) -> str:
    """The --model name a config is of: the first name of its family whose fixed fields it has (lstm, gru, gpt)."""
    family = family_of(config)
    for name, (named_family, fixed) in MODEL_NAMES.items():
        if named_family == family and all(getattr(config, k) == v for k, v in fixed.items()):
            return name
    return family


def config_to_dict(config: Any) -> dict[str, Any]:
    return {"family": family_of(config), **dataclasses.asdict(config)}


def config_from_dict(data: dict[str, Any]) -> Any:
    data = dict(data)
    family = data.pop("family", None)
    if not isinstance(family, str) or family not in FAMILIES:
        raise TinyLMError(f"config names an unknown model family {family!r}")
    config_class = FAMILIES[family].config
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = set(data) - known
    if unknown:
        raise TinyLMError(f"model config has unknown fields: {', '.join(sorted(unknown))}")
    return config_class(**data)


def build_model(config: Any) -> LanguageModel:
    return FAMILIES[family_of(config)].model(config)


__all__ = ["FAMILIES", "MODEL_NAMES", "Family", "ModelName", "CountingModel", "LanguageModel", "RNNConfig",
           "RecurrentLM", "build_model", "config_from_dict", "config_to_dict", "model_config"]
