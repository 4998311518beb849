"""Dataclass configs from plain dicts (TOML, JSON, CLI flags), with unknown keys an error.

A misspelt key never falls silently to a default: `from_dict` names the dataclass, the unknown keys
and the valid ones. Used by every config that is read back from a file or a flag (FrontendConfig,
TrainConfig and its AugmentConfig, the models' configs). Standard library only.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, TypeVar

T = TypeVar("T")


class ConfigError(ValueError, TypeError):
    """A config dict has keys its dataclass does not know. A ValueError (a bad value in a file) and a
    TypeError (a bad keyword argument) alike, so callers that catch either keep working."""


def check_fields(cls: type, keys: Iterable[str]) -> None:
    """ConfigError naming `cls`, the keys it has no field for, and its fields, if there are any."""
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(keys) - set(valid))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown fields {unknown}; valid: {', '.join(valid)}")


def from_dict(cls: type[T], d: Mapping) -> T:
    """`cls(**d)` once every key of `d` is one of its fields (else ConfigError)."""
    check_fields(cls, d)
    return cls(**d)
