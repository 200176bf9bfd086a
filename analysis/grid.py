"""Accelerator parameter grids: parse the grid YAML, expand it, apply an assignment to a config.

Grid file (``docs/analysis.md``, "Grid format")::

    # keys valid for every accelerator (a list of values each)
    clock_mhz: [500, 1000]
    # per-model sections: the key is a config ``model``; applies to accelerators of that model
    systolic:
      array.rows: [16, 32]
      dataflow: [os, ws]
      dram.bandwidth_gb_s: [12.8, 25.6]
      array: [{rows: 16, cols: 16}, {rows: 64, cols: 64}]   # a mapping is merged: tied values
    gpu:
      tile.m: [64, 128]

The points of one accelerator are the Cartesian product of the common keys and its model's
section. An accelerator whose model has no section (and no common keys) runs once, as written.
Assignments are applied to ``cfg.model_dump()`` and re-validated with ``hwsim.config.parse_config``,
so an invalid value fails with hwsim's own one-line error naming the field.
"""
from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any


from hwsim.config import parse_config
from hwsim.models import registry
from hwsim.models.base import AccelConfig
from hwsim.trace.fileio import load_yaml
from hwsim.trace.errors import HwsimError


class Grid:
    """``common``: dotted key -> values for every model; ``per_model``: model -> (key -> values)."""

    def __init__(self, common: dict[str, list], per_model: dict[str, dict[str, list]], source: str):
        self.common = common
        self.per_model = per_model
        self.source = source

    @property
    def keys(self) -> list[str]:
        """Every dotted key, in file order, once."""
        out = list(self.common)
        for section in self.per_model.values():
            out += [k for k in section if k not in out]
        return out

    def for_model(self, model: str) -> dict[str, list]:
        out = dict(self.common)
        out.update(self.per_model.get(model, {}))
        return out

    def to_json(self) -> dict:
        return {"common": self.common, "per_model": self.per_model, "source": self.source}

    @classmethod
    def empty(cls) -> "Grid":
        return cls({}, {}, "(no grid)")


def _check_values(values: Any, src: str, where: str) -> list:
    if not isinstance(values, list):
        raise HwsimError(src, where, f"expected a list of values, got {values!r}")
    if not values:
        raise HwsimError(src, where, "empty list of values (empty grid)")
    seen = []
    for v in values:
        canon = json.dumps(v, sort_keys=True, default=str)
        if canon in seen:
            raise HwsimError(src, where, f"duplicate value {v!r}")
        seen.append(canon)
    return values


def _check_key(key: Any, src: str) -> str:
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise HwsimError(src, repr(key), "grid keys must be dotted config field names, e.g. array.rows")
    return key


def parse_grid(data: Any, source: str) -> Grid:
    if data is None or data == {}:
        raise HwsimError(source, "(top level)", "empty grid (give at least one key with a list of values)")
    if not isinstance(data, dict):
        raise HwsimError(source, "(top level)", "must be a mapping of dotted config keys (or model names) to lists")
    common: dict[str, list] = {}
    per_model: dict[str, dict[str, list]] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in registry.names():
                raise HwsimError(source, str(key),
                                 f"a mapping must be a per-model section, but {key!r} is no known model "
                                 f"(known: {', '.join(sorted(registry.names()))})")
            if not value:
                raise HwsimError(source, str(key), "empty section (empty grid)")
            per_model[key] = {_check_key(k, source): _check_values(v, source, f"{key}.{k}") for k, v in value.items()}
        else:
            common[_check_key(key, source)] = _check_values(value, source, str(key))
    return Grid(common, per_model, source)


def load_grid(path: str | Path) -> Grid:
    data = load_yaml(path)
    return parse_grid(data, str(path))


def assignments(grid: Grid, model: str) -> list[dict[str, Any]]:
    """Every assignment (dotted key -> value) for an accelerator of ``model``; [{}] without keys."""
    keys = grid.for_model(model)
    if not keys:
        return [{}]
    names = list(keys)
    return [dict(zip(names, combo)) for combo in itertools.product(*(keys[k] for k in names))]


def _merge(base: Any, value: Any) -> Any:
    if isinstance(base, dict) and isinstance(value, dict):
        out = dict(base)
        for k, v in value.items():
            out[k] = _merge(base.get(k), v) if k in base else v
        return out
    return copy.deepcopy(value)


def set_dotted(data: dict, key: str, value: Any, source: str, model: str) -> None:
    """Set ``key`` (``a.b.c``; list items by index, ``energy.sram.0.kb``) in a config dump; the key must
    already exist there (a grid key a config doesn't have is an error, not a silent new field)."""
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        path = ".".join(parts[: i + 1])
        if isinstance(node, dict):
            if part not in node:
                raise HwsimError(source, key, f"grid key is not a field of this {model!r} config (no {path!r})")
            if last:
                node[part] = _merge(node[part], value)
            else:
                node = node[part]
        elif isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise HwsimError(source, key, f"grid key: {path!r} is not an index of a {len(node)}-item list")
            if last:
                node[int(part)] = _merge(node[int(part)], value)
            else:
                node = node[int(part)]
        else:
            raise HwsimError(source, key, f"grid key: {'.'.join(parts[:i])!r} is a value, not a mapping")


def get_dotted(data: Any, key: str) -> tuple[bool, Any]:
    node = data
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def apply(cfg: AccelConfig, assignment: dict[str, Any], source: str) -> AccelConfig:
    """``cfg`` with every dotted key set, re-validated (hwsim's one-line error on a bad value)."""
    if not assignment:
        return cfg
    data = cfg.model_dump()
    for key, value in assignment.items():
        set_dotted(data, key, value, source, cfg.model)
    label = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in assignment.items())
    return parse_config(data, f"{source} [grid {label}]")
