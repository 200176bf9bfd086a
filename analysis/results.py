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

from analysis.sweepcheck import SCHEMA_VERSION, Table, check_sweep
from hwsim.trace.errors import HwsimError

__all__ = ["SCHEMA_VERSION", "Table", "load_sweep", "load_tables", "read_table", "to_records", "typed"]

POINTS_CSV = "points.csv"
LAYERS_CSV = "layers.csv"
SWEEP_JSON = "sweep.json"
REQUIRED_POINT_COLUMNS = ("point_id", "run", "run_path", "accel", "total_cycles", "energy_pj", "time_us")
REQUIRED_LAYER_COLUMNS = ("point_id", "layer")


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


def read_table(path: Path) -> Table:
    """A CSV's typed rows; a file that is not a CSV (binary, NUL bytes, a row with more or fewer
    cells than the header, a repeated column name) is one error naming the file and line."""
    rows, lines = [], []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            columns = next(reader, [])
            if not columns:
                raise HwsimError(str(path), "header", "empty file (no header row)")
            dup = next((c for i, c in enumerate(columns) if c in columns[:i]), None)
            if dup is not None:
                raise HwsimError(str(path), f"line 1, column {dup}", "column named twice in the header")
            for cells in reader:
                if not cells:
                    continue
                if len(cells) != len(columns):
                    raise HwsimError(str(path), f"line {reader.line_num}",
                                     f"{len(cells)} cells for {len(columns)} columns")
                rows.append({k: typed(v) for k, v in zip(columns, cells)})
                lines.append(reader.line_num)
    except FileNotFoundError:
        raise HwsimError(str(path), "file", "missing (is this a sweep directory from python -m analysis.dse?)") from None
    except UnicodeDecodeError as exc:
        raise HwsimError(str(path), "file", f"not a UTF-8 text CSV (byte {exc.start}: {exc.reason})") from None
    except csv.Error as exc:
        raise HwsimError(str(path), "file", f"not a CSV ({exc})") from None
    return Table(str(path), rows, columns, lines)


def require_columns(table: Table, required: Iterable[str], why: str = "") -> None:
    for col in required:
        if col not in table.columns:
            raise HwsimError(table.path, col, "column missing" + (f" ({why})" if why else ""))


def read_meta(root: Path) -> dict:
    path = root / SWEEP_JSON
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HwsimError(str(path), "file", "missing (is this a sweep directory?)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise HwsimError(str(path), "json", f"not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise HwsimError(str(path), "(top level)", "expected a JSON object")
    return meta


def load_tables(root: Path, point_columns: Iterable[str] = REQUIRED_POINT_COLUMNS,
                layer_columns: Iterable[str] = REQUIRED_LAYER_COLUMNS,
                why: tuple[str, str] = ("", "")) -> tuple[Table, Table, dict]:
    """Read and check (``analysis.sweepcheck``) the three files of a sweep directory; ``why``: what
    the reader needs the points' and the layers' required columns for (said when one is missing)."""
    points = read_table(root / POINTS_CSV)
    require_columns(points, point_columns, why[0])
    if not points.rows:
        raise HwsimError(points.path, "rows", "no points (has the sweep run?)")
    layers = read_table(root / LAYERS_CSV)
    require_columns(layers, layer_columns, why[1])
    meta = read_meta(root)
    check_sweep(points, layers, meta, str(root / SWEEP_JSON))
    return points, layers, meta


def load_sweep(sweep_dir: str | Path) -> tuple[list[dict], list[dict], dict]:
    """(points, layers, sweep.json) of a sweep directory, checked (``analysis.sweepcheck``)."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise HwsimError(str(root), "--sweep", "not a directory")
    points, layers, meta = load_tables(root)
    return points.rows, layers.rows, meta


def to_records(data: Any) -> list[dict]:
    """A list of dicts from records or a pandas DataFrame (no pandas import needed)."""
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        return data.to_dict("records")
    if isinstance(data, dict):
        raise HwsimError("records", "(top level)", "expected a list of row dicts or a DataFrame, got a dict")
    return list(data)
