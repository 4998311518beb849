"""An `Experiment` from a small TOML file and overrides: the one place where the two are merged.

A config file holds top-level `Experiment` keys (`model = "voxemo_net"`, `protocol = "loso"`, ...)
and four tables: `[train]` (TrainConfig fields), `[frontend]` (FrontendConfig fields),
`[model_overrides]` (the model's own hyper-parameters) and `[audio]` (AudioSettings fields; the
papers' 3 s crop from 0.5 s unless set). Overrides (the CLI's flags) win over the file; `None`
overrides are ignored, so a flag left unset never shadows the file or the model's defaults.
`epochs`, `lr`, `batch_size` and the other TrainConfig fields may be given as overrides too: they go
into `[train]`. Anything the file or the overrides name that is not one of these is a `ConfigError`
naming it and listing what is valid. `from_dict` builds any config dataclass from a dict the same
way. Standard library only at import time: the models import it.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Iterable, Mapping, TypeVar

T = TypeVar("T")

TABLES = ("train", "frontend", "model_overrides", "audio")
LEGACY_TABLES = {"model_config": "model_overrides"}  # older configs' name, still read


class ConfigError(ValueError, TypeError):
    """A config file, an override or a config dict that does not describe what it should; the
    message names the bad key or table and lists the valid ones. A ValueError (a bad value in a
    file) and a TypeError (a bad keyword argument) alike, so callers that catch either keep working."""


def _fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _check_keys(where: str, keys, valid: list[str], hint: str = "") -> None:
    unknown = [k for k in keys if k not in valid]
    if unknown:
        raise ConfigError(f"{where}: unknown {'key' if len(unknown) == 1 else 'keys'} {', '.join(map(repr, unknown))}"
                          f"{hint}; valid: {', '.join(valid)}")


def check_fields(cls: type, keys: Iterable[str]) -> None:
    """ConfigError naming `cls`, the keys it has no field for, and its fields, if there are any."""
    _check_keys(cls.__name__, sorted(set(keys)), _fields(cls))


def from_dict(cls: type[T], d: Mapping) -> T:
    """`cls(**d)` once every key of `d` is one of its fields (else ConfigError): every config read
    back from a file or a flag (FrontendConfig, TrainConfig and its AugmentConfig, the models'
    configs) goes through this, so a misspelt key never falls silently to a default."""
    check_fields(cls, d)
    return cls(**d)


def read_config(path: str | Path) -> dict:
    """The TOML file as a dict; ConfigError naming the path when it is missing or not TOML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def experiment_from_config(path: str | Path | None = None, **overrides):
    """The Experiment a TOML file (or none) and overrides describe; ConfigError if they do not describe one."""
    from .baseline import BASELINES
    from .audio import AudioSettings
    from .experiment import Experiment, default_audio
    from .features import FrontendConfig
    from .models import list_models
    from .train import TrainConfig

    d = read_config(path) if path is not None else {}
    where = str(path) if path is not None else "configuration"
    for old, new in LEGACY_TABLES.items():
        if old in d and new not in d:
            d[new] = d.pop(old)
    top = [k for k in _fields(Experiment) if k not in TABLES]
    tables = {t: d.pop(t, {}) for t in TABLES}
    for t, value in tables.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {t} must be a table ([{t}] followed by its keys), not {value!r}")
    for name, value in d.items():
        if isinstance(value, dict):
            raise ConfigError(f"{where}: unknown table [{name}]; valid tables: {', '.join(f'[{t}]' for t in TABLES)}")
    misplaced = [k for k in d if k in _fields(TrainConfig)]
    hint = f" ({', '.join(misplaced)} belong{'s' if len(misplaced) == 1 else ''} in [train])" if misplaced else ""
    _check_keys(where, d, top + [f"[{t}]" for t in TABLES], hint)
    for table, cls in (("train", TrainConfig), ("frontend", FrontendConfig), ("audio", AudioSettings)):
        _check_keys(f"{where} [{table}]", tables[table], _fields(cls))

    train_keys = _fields(TrainConfig)
    for key, value in overrides.items():
        if value is None:
            continue
        if key in TABLES:
            tables[key].update(value)
        elif key in top:
            d[key] = value
        elif key in train_keys:
            tables["train"][key] = value
        else:
            raise ConfigError(f"unknown setting {key!r}; valid: {', '.join(top + train_keys)}")
    if isinstance(d.get("emotions"), str):  # "neutral,calm,happy" as the CLI takes it
        d["emotions"] = tuple(e.strip() for e in d["emotions"].split(",") if e.strip())

    if not d.get("model"):
        raise ConfigError("no model given: pass --model NAME (see `voxemo models`) or set model in the --config file")
    known = [*list_models(), *BASELINES]
    if d["model"] not in known:
        raise ConfigError(f"unknown model {d['model']!r}; known: {', '.join(known)}")
    try:
        exp = Experiment(**d, audio=AudioSettings(**{**default_audio(d["model"]).to_dict(), **tables["audio"]}),
                         frontend=tables["frontend"], model_overrides=tables["model_overrides"], train=tables["train"])
        if not exp.is_baseline:
            exp.train_config(), exp.frontend_config()
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad configuration: {e}") from None
    if not exp.is_baseline:
        _check_model_overrides(where, d["model"], tables["model_overrides"])
        _check_counts(where, {k: getattr(exp.train_config(), k) for k in ("epochs", "batch_size")} | {"lr": exp.train_config().lr})
    _check_counts(where, {k: d.get(k) for k in ("folds", "max_folds", "val_speakers", "repeats")})
    return exp


MINIMUM = {"epochs": 1, "batch_size": 1, "folds": 2, "max_folds": 1, "val_speakers": 0, "repeats": 1}  # least valid values


def _check_counts(where: str, values: dict) -> None:
    """Counts must be at least their MINIMUM and the learning rate positive: ConfigError naming the setting."""
    for key, value in values.items():
        if value is None:
            continue
        if key == "lr":
            if not value > 0:
                raise ConfigError(f"{where}: lr must be positive, not {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or value < MINIMUM[key]:
            raise ConfigError(f"{where}: {key} must be a whole number of at least {MINIMUM[key]}, not {value!r}")


def _check_model_overrides(where: str, model: str, overrides: dict) -> None:
    """[model_overrides] keys must be fields of the model's config dataclass; ConfigError naming the
    unknown key and listing the valid ones, or the model's own complaint about a value."""
    from .models import create_model

    valid = _fields(type(create_model(model).config))
    _check_keys(f"{where} [model_overrides] ({model})", overrides, valid)
    if overrides:
        try:
            create_model(model, **overrides)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where} [model_overrides] ({model}): {e}") from None
