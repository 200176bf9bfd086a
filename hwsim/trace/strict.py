"""Strict scalars for every config base (``cdg.sections.Section``, ``hwsim.models.base.StrictModel``).

pydantic's lax mode, which configs need so that a YAML ``1`` fills a float field, also turns
``true`` into ``1`` for a number field (``array.rows: true`` became a one-row array,
``train.epochs=true`` one epoch) and lets an integer of any size through to torch or numba,
which then crash. :func:`scalar_problem` is the one rule both bases apply to every field before
pydantic converts it:

* a boolean is refused where the field's type admits numbers but not booleans;
* an integer must fit in 64 bits (what numpy, numba and torch hold);
* a float must be finite (``.inf``, ``.nan``) wherever the type admits floats, also inside lists
  and mappings;
* a string holds no NUL character (a YAML ``"\0"``; no path can, and ``open`` would raise).

Everything that was valid stays valid and resolves to the same values: the rule only refuses.
It works on type annotations alone (the standard ``typing`` module), so it lives in the
numpy-only contract package that both ``cdg`` and ``hwsim`` may import.
"""
from __future__ import annotations

import math
import types
import typing
from typing import Any, Literal, Union

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _options(annotation: Any) -> list:
    """The alternatives of a Union/Optional (one entry for anything else), Annotated unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _options(typing.get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [o for arg in typing.get_args(annotation) for o in _options(arg)]
    return [annotation]


def _admits(annotation: Any, kind: type) -> bool:
    for option in _options(annotation):
        if option is Any or option is object:
            return True
        if typing.get_origin(option) is Literal:
            if any(type(v) is kind for v in typing.get_args(option)):
                return True
            continue
        if option is kind:
            return True
    return False


def _container_args(annotation: Any) -> tuple[Any, Any] | None:
    """(key type, item type) of the list/tuple/set/dict alternative of ``annotation``, if any."""
    for option in _options(annotation):
        origin = typing.get_origin(option)
        args = typing.get_args(option)
        if origin in (list, set, frozenset) and args:
            return None, args[0]
        if origin is tuple and args:
            return None, args[0] if len(args) == 2 and args[1] is Ellipsis else Union[args]  # type: ignore[valid-type]
        if origin is dict and len(args) == 2:
            return args[0], args[1]
    return None


def _short(value: int) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:10]}...({len(text)} digits)"


def scalar_problem(annotation: Any, value: Any) -> str | None:
    """Why ``value`` is not acceptable for a field typed ``annotation`` (``None``: acceptable, or
    left to pydantic's own checks)."""
    numeric = _admits(annotation, int) or _admits(annotation, float)
    if isinstance(value, bool):
        if numeric and not _admits(annotation, bool):
            return f"must be a number, not the boolean {str(value).lower()}"
        return None
    if isinstance(value, int):
        if _admits(annotation, int) and not INT64_MIN <= value <= INT64_MAX:
            return f"integer {_short(value)} is out of range (it must fit in 64 bits)"
        if _admits(annotation, float) and not _admits(annotation, int) and abs(value) > 2**1023:
            return f"integer {_short(value)} is too large for a float"
        return None
    if isinstance(value, float):
        if _admits(annotation, float) and not math.isfinite(value):
            return f"must be a finite number, not {value}"
        return None
    if isinstance(value, str):
        if "\x00" in value and _admits(annotation, str):
            return "must not contain a NUL character (no file name can)"
        return None
    inner = _container_args(annotation)
    if inner is None:
        return None
    key_type, item_type = inner
    if isinstance(value, dict):
        items = [(k, v) for k, v in value.items()]
        for key, item in items:
            problem = (scalar_problem(key_type, key) if key_type is not None else None) or scalar_problem(item_type, item)
            if problem:
                return f"[{key!r}] {problem}"
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = scalar_problem(item_type, item)
            if problem:
                return f"[{index}] {problem}"
    return None
