"""Recipe configuration: a YAML file + ``key=value`` command-line overrides, checked against dataclasses.

Unknown keys are errors (with the closest valid names), never silently ignored. Nested sections
are nested dataclasses; overrides use dotted paths (``model.d_model=256``) and YAML syntax for
values (``tokenizer.levels=[256,256,256]``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not match the recipe's schema."""


class ConfigValueError(ConfigError):
    """A setting out of its range, or settings that contradict each other (raised by a config's ``__post_init__``)."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigValueError` with ``message`` unless ``condition``: every config checks its values when
    it is built, so a bad setting fails before any data is loaded or any step is trained."""
    if not condition:
        raise ConfigValueError(message)


def check_positive(obj, *names: str, allow_none: bool = False, minimum: float = 1) -> None:
    """Each field ``names`` of dataclass ``obj`` is >= ``minimum`` (or None when ``allow_none``)."""
    for name in names:
        value = getattr(obj, name)
        if value is None and allow_none:
            continue
        require(value is not None and value >= minimum,
                f"{name} must be >= {minimum}{' or null' if allow_none else ''}, got {value!r}")


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unwrap_optional(tp):
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _coerce(value: Any, tp: Any, where: str) -> Any:
    tp = _unwrap_optional(tp)
    if value is None:
        return None
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for section, got {type(value).__name__}")
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, bool):
        raise ConfigError(f"{where}: expected a string, got the boolean {value} (YAML reads no/yes/on/off as booleans: quote it, e.g. 'no')")
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{where}[{i}]") if item_tp is not Any else v for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys."""
    types_ = _field_types(cls)
    unknown = [k for k in data if k not in types_]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(k, types_, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else f" Valid keys: {', '.join(types_)}."
        raise ConfigError(f"{where}: unknown key '{k}'.{hint}")
    kwargs = {k: _coerce(v, types_[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigValueError as e:
        raise ConfigValueError(f"{where}: {e}") from None


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` strings (value parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{p}' is not a section")
        value = yaml.safe_load(raw)
        # YAML 1.1 reads no/yes/on/off as booleans; on the command line they are meant as words
        # (Accelerate's mixed_precision=no). Only true/false are booleans here.
        if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
            value = raw.strip()
        node[parts[-1]] = value
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Load ``cls`` from an optional YAML file plus overrides; defaults fill the rest."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    where = str(path) if path else "config"
    if path is not None:
        from_dict(cls, data, where=where)  # the file's own errors name the file
    for override in overrides or []:  # ... and a command-line typo names the override, not the file
        try:
            from_dict(cls, apply_overrides({}, [override]), where="config")
        except ConfigValueError:
            pass  # a value rule, possibly across fields that only the merged config sets: checked below
        except ConfigError as e:
            raise ConfigError(f"command-line override '{override}': {e}") from None
        except (TypeError, ValueError):
            pass
    apply_overrides(data, overrides or [])
    return from_dict(cls, data, where=where)


def add_data_dir_argument(parser) -> None:
    """``--data-dir DIR`` on a recipe's command line: the same as the override ``data_dir=DIR``."""
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="folder holding the datasets (= the override data_dir=DIR; default $GENREC_DATA_DIR)")


def data_dir_overrides(args) -> list[str]:
    """The recipe's overrides with ``--data-dir`` appended as ``data_dir=...`` (see :func:`add_data_dir_argument`)."""
    return list(args.overrides) + ([f"data_dir={args.data_dir}"] if getattr(args, "data_dir", None) else [])
