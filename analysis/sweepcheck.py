"""Check a sweep's CSVs against each other and against ``sweep.json`` before anything reads them.

``analysis.pareto`` and ``analysis.dashboard`` compute fronts and figures from these files; a cell
they could not use used to be dropped in silence (a NaN cost is never on a front, ``-1e308`` is on
every one). Every problem is one :class:`~hwsim.trace.errors.HwsimError` naming the file, the line
(the header is line 1, as a spreadsheet numbers rows) and the column: a non-numeric, NaN, infinite
or out-of-range cell in a column that needs a number, a duplicate point or layer row, layer rows of
a point that ``points.csv`` does not have, a run or accelerator that ``sweep.json`` does not list
(a CSV from another sweep), two accelerators sharing one name, or another schema version.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from hwsim.trace.errors import HwsimError

SCHEMA_VERSION = 2  # of points.csv / layers.csv / sweep.json (2: experiment, gate_recipe, budget columns)


@dataclass
class Table:
    """One CSV as read: typed rows, the header, and each row's line in the file."""

    path: str
    rows: list[dict]
    columns: list[str]
    lines: list[int]


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# kind -> (accepts the typed cell, what it must be); None (an empty cell) is checked separately
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "positive": (lambda v: _finite(v) and v > 0, "a finite number > 0"),
    "nonneg": (lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
    "saving": (lambda v: _finite(v) and v <= 1, "a finite number <= 1"),
    "fraction": (lambda v: _finite(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "reduction": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
                  "a number > 0 (inf: nothing needed)"),
    "ratio_or_nan": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isinf(v),
                     "a finite number or nan"),
    "bool": (lambda v: isinstance(v, bool), "True or False"),
    "index": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
}
COMMON = {"cycles": "nonneg", "dense_cycles": "nonneg", "total_cycles": "positive", "dense_total_cycles": "positive",
          "speedup": "positive", "flops_reduction": "reduction", "zero_work_removed": "ratio_or_nan",
          "time_us": "positive", "dense_time_us": "positive", "energy_pj": "nonneg", "dense_energy_pj": "nonneg",
          "energy_saving": "saving", "dram_bytes": "nonneg", "utilisation": "nonneg", "macs": "nonneg",
          "dense_macs": "nonneg", "needed_macs": "nonneg"}
POINT_KINDS = {**COMMON, "clock_mhz": "positive", "linear_top1": "fraction", "knn_top1": "fraction", "trained_reduction": "positive"}
LAYER_KINDS = {**COMMON, "total_cycles": "nonneg", "dense_total_cycles": "nonneg", "time_us": "nonneg",
               "dense_time_us": "nonneg", "gate_density": "fraction", "input_act_density": "fraction",
               "gated": "bool", "layer_index": "index"}
# cells that may be empty (no value: an unevaluated run, an ungated layer; and an energy component
# another model of the sweep reports)
OPTIONAL = {"linear_top1", "knn_top1", "trained_reduction", "gate_density", "input_act_density"}
TEXT = {"point_id", "run", "run_path", "accel", "accel_model", "layer"}


def kind_of(column: str, kinds: Mapping[str, str]) -> str | None:
    if column in kinds:
        return kinds[column]
    if column.startswith("energy_") and column.endswith("_pj"):
        return "nonneg"  # a model's energy component
    return None


def check_cells(table: Table, kinds: Mapping[str, str]) -> None:
    """Every cell of a known column is what the column needs (module docstring)."""
    checks = [(c, kind_of(c, kinds), c in OPTIONAL or c not in kinds) for c in table.columns]
    for row, line in zip(table.rows, table.lines):
        for col, kind, optional in checks:
            value = row.get(col)
            if value is None:
                if col in TEXT or (kind is not None and not optional):
                    raise HwsimError(table.path, f"line {line}, column {col}", "empty cell (needs a value)")
                continue
            if kind is None:
                continue
            ok, what = KINDS[kind]
            if not ok(value):
                raise HwsimError(table.path, f"line {line}, column {col}", f"{value!r} is not {what}")


def check_unique(table: Table, key: tuple[str, ...]) -> None:
    seen: dict[tuple, int] = {}
    for row, line in zip(table.rows, table.lines):
        k = tuple(row.get(c) for c in key)
        if k in seen:
            raise HwsimError(table.path, f"line {line}, column {'/'.join(key)}",
                             f"duplicate of line {seen[k]} ({', '.join(map(str, k))})")
        seen[k] = line


def check_meta(meta: Mapping[str, Any], meta_path: str) -> None:
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise HwsimError(meta_path, "schema_version",
                         f"{version!r}, but this analysis reads version {SCHEMA_VERSION} (re-run the sweep's "
                         f"python -m analysis.dse command: journaled points are reused, nothing is recomputed)")
    for key in ("runs", "accels"):
        if not isinstance(meta.get(key), list):
            raise HwsimError(meta_path, key, "missing or not a list (not written by python -m analysis.dse?)")


def check_against_meta(points: Table, meta: Mapping[str, Any], meta_path: str) -> None:
    """Every point's run and accelerator are the sweep's (a CSV copied from another sweep is not);
    one accelerator name is one file; the row count is the one ``sweep.json`` recorded."""
    runs = {str(r) for r in meta["runs"]}
    accels: dict[str, set[str]] = {}
    for a in meta["accels"]:
        if isinstance(a, Mapping):
            accels.setdefault(str(a.get("name")), set()).add(str(a.get("file")))
    for name, files in accels.items():
        if len(files) > 1:
            raise HwsimError(meta_path, f"accels {name}", f"one name for {len(files)} configs ({', '.join(sorted(files))})")
    for row, line in zip(points.rows, points.lines):
        if str(row.get("run_path")) not in runs:
            raise HwsimError(points.path, f"line {line}, column run_path",
                             f"{row.get('run_path')!r} is not a run of this sweep ({meta_path} runs)")
        files = accels.get(str(row.get("accel")))
        if files is None or ("accel_file" in row and str(row.get("accel_file")) not in files):
            raise HwsimError(points.path, f"line {line}, column accel",
                             f"{row.get('accel')!r} ({row.get('accel_file')}) is not an accelerator of this sweep "
                             f"({meta_path} accels)")
    counts = meta.get("counts")
    done = counts.get("done") if isinstance(counts, Mapping) else None
    if done is not None and done != len(points.rows):
        raise HwsimError(points.path, "rows", f"{len(points.rows)} points, but {meta_path} counts.done is {done} "
                                              f"(a CSV of another sweep, or edited?)")


def check_layers_belong(points: Table, layers: Table) -> None:
    ids = {row.get("point_id") for row in points.rows}
    for row, line in zip(layers.rows, layers.lines):
        if row.get("point_id") not in ids:
            raise HwsimError(layers.path, f"line {line}, column point_id",
                             f"{row.get('point_id')!r} is not a point of {points.path} (a CSV of another sweep?)")
    have = {row.get("point_id") for row in layers.rows}
    for row, line in zip(points.rows, points.lines):
        if row.get("point_id") not in have:
            raise HwsimError(layers.path, f"point_id {row.get('point_id')}",
                             f"no layer rows for this point of {points.path} (line {line})")


def check_sweep(points: Table, layers: Table, meta: Mapping[str, Any], meta_path: str) -> None:
    """Everything in the module docstring, in the order a reader would want to hear about it."""
    check_meta(meta, meta_path)
    check_cells(points, POINT_KINDS)
    check_unique(points, ("point_id",))
    check_cells(layers, LAYER_KINDS)
    check_unique(layers, ("point_id", "layer"))
    check_against_meta(points, meta, meta_path)
    check_layers_belong(points, layers)
