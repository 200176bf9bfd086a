"""The task function of a sweep, shared by the process pool and Ray: simulate a chunk of points of
one run (its trace loaded once per worker and cached), returning plain JSON-able records.
"""
from __future__ import annotations

import itertools
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

from hwsim.trace.io import sha256
from hwsim.api import simulate_trace
from hwsim.config import parse_config
from hwsim.trace import load_trace
from hwsim.trace.errors import HwsimError
from hwsim.trace.layout import MANIFEST

# --------------------------------------------------------------------------------------------
_TRACE_CACHE: "OrderedDict[tuple[str, str], Any]" = OrderedDict()
_TRACE_CACHE_SIZE = 8


def _trace(path: str, digest: str):
    key = (path, digest)
    if key in _TRACE_CACHE:
        _TRACE_CACHE.move_to_end(key)
        return _TRACE_CACHE[key]
    if sha256(Path(path) / MANIFEST) != digest:
        raise HwsimError(path, "MANIFEST.json", "trace changed since the sweep started (re-run the sweep)")
    tr = load_trace(path)
    _TRACE_CACHE[key] = tr
    while len(_TRACE_CACHE) > _TRACE_CACHE_SIZE:
        _TRACE_CACHE.popitem(last=False)
    return tr


def _f(value: Any) -> Any:
    """JSON-safe plain Python scalar (numpy floats -> float)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    return value


def stage_of(layer_name: str) -> str:
    """Stage of a layer: the first component of its dotted name (``layer2.0.conv1`` -> ``layer2``,
    ``conv1`` -> ``conv1``)."""
    return layer_name.split(".", 1)[0]


def _simulate_point(trace, cfg_data: dict, source: str) -> dict:
    cfg = parse_config(cfg_data, source)
    run = simulate_trace(trace, cfg)
    totals = {k: _f(v) for k, v in run.totals().items()}
    totals["dense_cycles"] = float(sum(r.dense.cycles for r in run.layers))
    totals["dense_time_us"] = float(sum(r.dense_total_cycles / r.clock_mhz for r in run.layers))
    by_name = {layer.spec.name: layer for layer in trace.layers}
    layers = []
    for i, r in enumerate(run.layers):
        tl = by_name[r.name]
        gate = tl.spec.gate
        row = {"layer_index": i, "layer": r.name, "stage": stage_of(r.name), "op": tl.spec.op,
               "gate_G": gate.G if gate else None, "gate_S": gate.S if gate else None,
               "gate_b": gate.b if gate else None,
               "gate_density": tl.stats.gate_density_mean if gate else None,
               "input_act_density": tl.stats.input_act_density,
               "dense_cycles": float(r.dense.cycles)}
        row.update({k: _f(v) for k, v in r.row().items()})
        layers.append(row)
    return {"result": {"accel_mode": run.mode, "mask_source": run.mask_source, "n_images": run.n_images,
                       "clock_mhz": cfg.clock_mhz, "peak_macs_per_cycle": run.peak_macs_per_cycle, **totals},
            "layers": layers}


def simulate_chunk(task: dict) -> list[dict]:
    """Task function shared by the process pool and Ray: ``task`` = {trace, trace_digest, points:
    [{point_id, config, source}]}. Returns one record per point, or a single
    ``{"error": [source, field, message]}`` (HwsimError does not survive pickling as itself)."""
    try:
        tr = _trace(task["trace"], task["trace_digest"])
        out = []
        for p in task["points"]:
            rec = _simulate_point(tr, p["config"], p["source"])
            rec["point_id"] = p["point_id"]
            out.append(rec)
        return out
    except HwsimError as exc:
        return [{"error": [exc.source, exc.field, exc.message]}]


def make_tasks(points: Sequence[Any], chunk: int) -> list[dict]:
    """Chunks of at most ``chunk`` points (``analysis.dse.Point``) of one run each, runs in turn."""
    by_run: dict[str, list[Any]] = {}
    for p in points:
        by_run.setdefault(p.run.run_path, []).append(p)
    per_run = []
    for pts in by_run.values():
        chunks = []
        for i in range(0, len(pts), chunk):
            part = pts[i:i + chunk]
            chunks.append({"trace": part[0].run.trace_path, "trace_digest": part[0].run.trace_digest,
                           "points": [{"point_id": p.point_id, "config": p.cfg.model_dump(),
                                       "source": p.accel.path} for p in part]})
        per_run.append(chunks)
    # runs in turn (round robin), so the progress bar's rate is representative early on
    return [c for group in itertools.zip_longest(*per_run) for c in group if c is not None]
