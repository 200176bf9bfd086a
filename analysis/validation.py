"""Measured sparse execution against the cpu model's prediction, per layer and per network.

A measurement directory holds ``execution.json`` (written by ``python -m cdg.execute``; schema in
docs/analysis.md) and the trace whose masks were executed (its ``trace`` field). For each, the
accelerator config is run on that trace at the measured batch and threads (``hwsim.api``), and
measured and predicted speed-ups (dense median / sparse median) are paired by layer name. The
figures: mean absolute percentage error of the predicted speed-up and Spearman's rank
correlation (scipy), over the gated layers of every directory and over the networks. Reads JSON
and traces only: analysis never imports cdg or torch.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.stats import spearmanr

from hwsim.api import simulate_trace
from hwsim.config import load_config
from hwsim.models.cpu.model import PATHS   # the cpu model's path codes (its 'path' counter)
from hwsim.trace.layout import EXECUTION_FILE
from hwsim.trace.errors import HwsimError

VERSION = 1
REQUIRED = ("version", "kind", "device", "threads", "batch", "trace", "layers", "total")
LAYER_REQUIRED = ("name", "path", "density", "dense_ms", "sparse_ms")


@dataclass(frozen=True)
class Row:
    """One layer (or one network, ``layer == "(network)"``) of one measurement directory."""

    run: str
    layer: str
    gated: bool
    path_measured: str
    path_predicted: str
    density: float
    measured_dense_ms: float
    measured_sparse_ms: float
    predicted_dense_ms: float
    predicted_sparse_ms: float

    @property
    def measured_speedup(self) -> float:
        return self.measured_dense_ms / self.measured_sparse_ms

    @property
    def predicted_speedup(self) -> float:
        return self.predicted_dense_ms / self.predicted_sparse_ms

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["measured_speedup"] = self.measured_speedup
        out["predicted_speedup"] = self.predicted_speedup
        out["abs_pct_error"] = abs(self.predicted_speedup / self.measured_speedup - 1) * 100
        return out


def _median(obj: Any, src: str, fld: str) -> float:
    value = obj.get("median") if isinstance(obj, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise HwsimError(src, fld, f"expected an object with a positive 'median', got {obj!r}")
    return float(value)


def read_execution(run_dir: Path) -> dict:
    """``run_dir/execution.json``, checked for what validation reads (one-line HwsimError)."""
    path = run_dir / EXECUTION_FILE
    src = str(path)
    if not path.is_file():
        raise HwsimError(src, "file", "missing (write it with python -m cdg.execute)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise HwsimError(src, "json", f"not valid JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise HwsimError(src, "(top level)", "expected a JSON object")
    for key in REQUIRED:
        if key not in data:
            raise HwsimError(src, key, "missing")
    if data["version"] != VERSION:
        raise HwsimError(src, "version", f"expected {VERSION}, got {data['version']!r}")
    for key in ("threads", "batch"):
        if isinstance(data[key], bool) or not isinstance(data[key], int) or data[key] < 1:
            raise HwsimError(src, key, f"expected a positive integer, got {data[key]!r}")
    if not isinstance(data["layers"], list) or not data["layers"]:
        raise HwsimError(src, "layers", "expected a non-empty list")
    for i, layer in enumerate(data["layers"]):
        if not isinstance(layer, dict):
            raise HwsimError(src, f"layers[{i}]", "expected an object")
        for key in LAYER_REQUIRED:
            if key not in layer:
                raise HwsimError(src, f"layers[{i}].{key}", "missing")
        for key in ("dense_ms", "sparse_ms"):
            _median(layer[key], src, f"layers[{i}].{key}")
    for key in ("dense_ms", "sparse_ms"):
        _median(data["total"].get(key) if isinstance(data["total"], dict) else None, src, f"total.{key}")
    return data


def cross_run(run_dir: str | Path, accel: str | Path) -> list[Row]:
    """Rows of one measurement directory: its layers, then one ``(network)`` row."""
    root = Path(run_dir)
    data = read_execution(root)
    src = str(root / EXECUTION_FILE)
    cfg = load_config(accel)
    if cfg.model != "cpu":
        raise HwsimError(str(accel), "model", f"validation predicts the cpu executor: need model 'cpu', got {cfg.model!r}")
    cfg = cfg.with_overrides(batch=data["batch"], threads=data["threads"],
                             channels_last=bool(data.get("channels_last", False)))
    trace_dir = root / str(data["trace"])
    result = simulate_trace(trace_dir, cfg)
    by_name = {r.name: r for r in result.layers}
    scale = cfg.batch / cfg.clock_mhz / 1e3        # per-image cycles -> ms per forward of the batch
    rows, name = [], root.name
    for i, layer in enumerate(data["layers"]):
        pred = by_name.get(layer["name"])
        if pred is None:
            raise HwsimError(src, f"layers[{i}].name", f"{layer['name']!r} is not a layer of {trace_dir}")
        code = pred.figures.counters.get("path", 0.0)
        rows.append(Row(name, layer["name"], pred.gated, str(layer["path"]), PATHS[int(code)],
                        float(layer["density"]), _median(layer["dense_ms"], src, "dense_ms"),
                        _median(layer["sparse_ms"], src, "sparse_ms"),
                        pred.dense_total_cycles * scale, pred.total_cycles * scale))
    measured_layers = {layer["name"] for layer in data["layers"]}
    every = [r for r in result.layers if r.name in measured_layers]
    total = data["total"]
    rows.append(Row(name, "(network)", True, "", "", float("nan"), _median(total["dense_ms"], src, "total.dense_ms"),
                    _median(total["sparse_ms"], src, "total.sparse_ms"),
                    sum(r.dense_total_cycles for r in every) * scale, sum(r.total_cycles for r in every) * scale))
    return rows


def agreement(rows: Sequence[Row]) -> dict:
    """Mean absolute percentage error of the predicted speed-up and Spearman's rho (NaN under 3 rows
    or when one side is constant)."""
    meas = np.array([r.measured_speedup for r in rows])
    pred = np.array([r.predicted_speedup for r in rows])
    if not len(rows):
        return {"n": 0, "mape_pct": float("nan"), "spearman": float("nan"), "bias_pct": float("nan")}
    rho = float("nan")
    if len(rows) >= 3 and np.ptp(meas) > 0 and np.ptp(pred) > 0:
        rho = float(spearmanr(meas, pred).statistic)
    return {"n": len(rows), "mape_pct": float(np.mean(np.abs(pred / meas - 1)) * 100), "spearman": rho,
            "bias_pct": float(np.mean(pred / meas - 1) * 100)}


def summary(rows: Sequence[Row]) -> dict:
    """Agreement over the gated layers, every layer and the networks, with the issue's goals."""
    nets = [r for r in rows if r.layer == "(network)"]
    layers = [r for r in rows if r.layer != "(network)"]
    return {"gated_layers": agreement([r for r in layers if r.gated]), "all_layers": agreement(layers),
            "networks": agreement(nets), "goals": {"mape_pct_max": 15.0, "spearman_min": 0.9}}
