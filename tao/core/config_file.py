"""The config file: a YAML file and dotted ``--set`` overrides read into a :class:`~tao.core.config.Config`, and a
config written back as plain data.

Precedence: the defaults < a YAML file (``--config``) < ``--set section.key=value`` (in order). Unknown keys and
wrong types are errors that name the key and where it was set.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from tao.core.config import Config, Invalid
from tao.core.errors import InputError


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults < the YAML file at ``path`` < each ``section.key=value`` override, in order."""
    values = to_dict(Config())
    origin: dict[str, str] = {}
    if path is not None:
        data = _read_yaml(Path(path))
        _merge(values, data, prefix="", source=str(path), origin=origin)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"expected section.key=value, got {item!r}", field="--set")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        _assign(values, key.strip(), value, origin)
    return _build(Config, values, prefix="", origin=origin)


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts and lists (tuples become lists), ready for YAML or JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def to_yaml(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def replace(config: Config, **sections: dict[str, Any]) -> Config:
    """A copy with some fields changed, e.g. ``replace(cfg, run={"rounds": 2})``; validated like a load."""
    values = to_dict(config)
    for section, fields in sections.items():
        for key, value in fields.items():
            _assign(values, f"{section}.{key}", value, {})
    return _build(Config, values, prefix="", origin={})


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("config file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read config: {exc}", file=path) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InputError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=path, line=line) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError("a config file must be a mapping of sections", file=path)
    return data


def _sections(cls: type = None, prefix: str = "") -> set[str]:
    """The dotted names of the config's sections (its dataclass-typed fields), e.g. {"", "model", "update", ...}."""
    cls = cls or Config
    found = {prefix.rstrip(".")}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            found |= _sections(hints[f.name], f"{prefix}{f.name}.")
    return found


def _merge(values: dict, data: dict, prefix: str, source: str, origin: dict[str, str]) -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in values:
            raise InputError(f"unknown key {dotted!r}", file=source, field=dotted)
        if dotted in _sections():
            if not isinstance(value, dict):
                raise InputError(f"{dotted!r} must be a mapping", file=source, field=dotted)
            _merge(values[key], value, f"{dotted}.", source, origin)
        else:
            values[key] = value
            origin[dotted] = source


def _assign(values: dict, dotted: str, value: Any, origin: dict[str, str]) -> None:
    """``section.key=value``; a mapping-valued setting takes ``section.key.name=value`` for one of its entries."""
    node, parts, sections = values, dotted.split("."), _sections()
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        if not isinstance(node, dict) or part not in node:
            if i == len(parts) - 1 and ".".join(parts[:i]) not in sections and isinstance(node, dict):
                node[part] = value  # a new entry of a mapping-valued setting
                origin[".".join(parts[:i])] = "--set"
                return
            raise InputError(f"unknown key {dotted!r}", field="--set")
        if i == len(parts) - 1:
            if here in sections:
                raise InputError(f"{dotted!r} is a section; set one of its keys", field="--set")
            node[part] = value
            origin[here] = "--set"
        node = node[part]


def _build(cls: type, values: dict, prefix: str, origin: dict[str, str]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}{f.name}"
        value = values[f.name]
        if dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = _build(hints[f.name], value, f"{dotted}.", origin)
        else:
            kwargs[f.name] = _coerce(hints[f.name], value, dotted, origin.get(dotted))
    try:
        return cls(**kwargs)
    except Invalid as exc:
        dotted = f"{prefix}{exc.name}"
        raise InputError(str(exc), file=origin.get(dotted), field=dotted) from None


def _coerce(hint: Any, value: Any, dotted: str, source: str | None) -> Any:
    def fail(expected: str) -> InputError:
        return InputError(f"expected {expected}, got {value!r}", file=source, field=dotted)

    kind = typing.get_origin(hint)
    if kind is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise fail("a mapping of names to values")
        for key, item in value.items():
            if not isinstance(item, (str, int, float, bool)) and item is not None:
                raise InputError(
                    f"expected a string, number or boolean, got {item!r}", file=source, field=f"{dotted}.{key}"
                )
        return dict(value)
    if kind is Literal:
        choices = typing.get_args(hint)
        if isinstance(value, bool) and {"on", "off"} <= set(choices):
            value = "on" if value else "off"  # YAML reads on/off as booleans
        if value not in choices:
            raise fail("one of " + ", ".join(map(str, choices)))
        return value
    if kind is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise fail("a list of strings")
        return tuple(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML reads 1e-5 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise fail("a finite number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise fail("a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {dotted}")
