"""Typed configuration from plain data (a TOML table, a checkpoint's JSON): every field checked
for type and range before anything is built or allocated, with a one-line error naming the file
and the field. A config dataclass declares its ranges in `LIMITS = {field: (low, high)}` and the
values a string field may take in `CHOICES = {field: (value, ...)}`."""

from __future__ import annotations

import dataclasses
import math
import typing

from rlfm.errors import RlfmError

INT_MAX = 2**62


def build(cls, data, source: str, table: str, error: type[RlfmError] = RlfmError):
    """`cls(**data)`, after checking that `data` is a table of known fields whose values have
    the field's type (bool, int, float or str) and lie in `cls.LIMITS` (or `cls.CHOICES`)."""
    if not isinstance(data, dict):
        raise error(f"{source}: {table} must be a table of settings, got {data!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise error(f"{source}: unknown key(s) in {table}: {', '.join(unknown)} "
                    f"(known: {', '.join(names)})")
    hints = typing.get_type_hints(cls)
    limits, choices = getattr(cls, "LIMITS", {}), getattr(cls, "CHOICES", {})
    values = {}
    for key, value in data.items():
        kind = hints[key]
        if not _has_type(value, kind):
            raise error(f"{source}: {table}.{key} must be {_article(kind)}, got {value!r}")
        low, high = limits.get(key, (None, None))
        if (low is not None and value < low) or (high is not None and value > high):
            raise error(f"{source}: {table}.{key} must lie in [{low}, {high}], got {value!r}")
        if key in choices and value not in choices[key]:
            raise error(f"{source}: {table}.{key} must be one of "
                        f"{', '.join(map(repr, choices[key]))}, got {value!r}")
        values[key] = float(value) if kind is float else value
    return cls(**values)


def _has_type(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and finite(value)
    return isinstance(value, kind)


def finite(value) -> bool:
    """A finite number (an integer too large for a float is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _article(kind) -> str:
    return {bool: "true or false", int: "an integer", float: "a finite number",
            str: "a string"}.get(kind, kind.__name__)
