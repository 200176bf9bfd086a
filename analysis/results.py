"""Read a sweep directory (``points.csv``, ``layers.csv``, ``sweep.json``) back as typed records.

numpy/pandas-free on purpose: records are ``list[dict]``; every analysis function also accepts a
pandas DataFrame (converted with ``to_records``). Cells are typed on read: '' -> None,
True/False -> bool, numbers (including nan/inf) -> float or int, JSON objects -> dict, else str.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable

from hwsim.trace.errors import HwsimError

POINTS_CSV = "points.csv"
LAYERS_CSV = "layers.csv"
SWEEP_JSON = "sweep.json"
REQUIRED_POINT_COLUMNS = ("point_id", "run", "accel", "total_cycles", "energy_pj", "time_us")


def typed(cell: str) -> Any:
    if cell == "":
        return None
    if cell in ("True", "False"):
        return cell == "True"
    if cell[0] in "{[":
        try:
            return json.loads(cell)
        except ValueError:
            return cell
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        return float(cell)
    except ValueError:
        return cell


def read_csv(path: Path, required: Iterable[str] = ()) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            rows = [{k: typed(v) for k, v in row.items()} for row in reader]
    except FileNotFoundError:
        raise HwsimError(str(path), "file", "missing (is this a sweep directory from python -m analysis.dse?)") from None
    for col in required:
        if col not in columns:
            raise HwsimError(str(path), col, "column missing")
    return rows


def load_sweep(sweep_dir: str | Path) -> tuple[list[dict], list[dict], dict]:
    """(points, layers, sweep.json) of a sweep directory."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise HwsimError(str(root), "--sweep", "not a directory")
    try:
        meta = json.loads((root / SWEEP_JSON).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HwsimError(str(root / SWEEP_JSON), "file", "missing (is this a sweep directory?)") from None
    except ValueError as exc:
        raise HwsimError(str(root / SWEEP_JSON), "json", f"not valid JSON ({exc})") from None
    points = read_csv(root / POINTS_CSV, REQUIRED_POINT_COLUMNS)
    layers = read_csv(root / LAYERS_CSV, ("point_id", "layer"))
    return points, layers, meta


def to_records(data: Any) -> list[dict]:
    """A list of dicts from records or a pandas DataFrame (no pandas import needed)."""
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        return data.to_dict("records")
    if isinstance(data, dict):
        raise HwsimError("records", "(top level)", "expected a list of row dicts or a DataFrame, got a dict")
    return list(data)
