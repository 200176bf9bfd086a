"""Co-design analysis of a sweep: Pareto fronts, best gate structures, where speed-up is lost.

Pareto fronts, the best gate structure per accelerator, and where the FLOPs reduction is lost on
the way to a speed-up.

    python -m analysis.pareto --sweep DIR [--accuracy linear_top1] [--tolerance 0.01] \
        [--cost time_us] [--by accel|design]

A layer row carries the typed loss fields under the counter columns its model declares
(``hwsim.models.registry.Model.loss_columns``, e.g. systolic ``folds`` / ``folds_run``).

Every function takes the records of ``points.csv`` / ``layers.csv`` (``analysis.results.load_sweep``)
or pandas DataFrames of them.

Loss breakdown (per layer, then summed; cycles per image; docs/analysis.md). With ``D`` the dense
total cycles, ``Dc`` the dense compute cycles, ``T``/``C`` the gated total/compute cycles and
``f = needed_macs / dense_macs``, the saving the FLOPs promise is ``D (1 - f)`` and the saving
realised is ``D - T``. The difference ``T - D f`` splits exactly into

- granularity: ``Dc (e - f)``, ``e`` = ``units_run / skip_units``, the fraction of the hardware's
  skip units that ran (typed loss fields of ``hwsim.figures.Figures``; systolic folds, GPU tiles):
  work the hardware cannot skip because its skip unit is coarser than the gate decision; clipped
  to ``[0, C - Dc f]`` (a model whose units all run while it compacts work, e.g. systolic
  ``compact``, has its compute loss counted here, not under overhead);
- imbalance: the typed ``imbalance_cycles`` (a model that reports load imbalance: sparse-PE);
- overhead: the rest of ``C - Dc f`` (index/compaction cycles, pipeline fill not shrinking with
  work, and for a model without skip units, granularity too);
- memory: ``(T - C) - (D - Dc) f``, memory-bound time that does not shrink with the gated work.

Floats are compared with the relative tolerance ``RTOL`` (1e-9): two values within ``RTOL`` of the
larger magnitude are equal (a run 1e-16 faster than dense does not beat it), and a saving, share or
gain whose size is below ``RTOL`` of its scale is zero. Rounding in hwsim's sums stays near 1e-15
relative; one cycle of a real per-image total is far above 1e-9 of it (docs/analysis.md).

Seeds are averaged only within one experiment (``analysis.experiment``: the ``experiment`` column,
same training config and budget) and one gate recipe (``gate_recipe``).
"""
from __future__ import annotations

import math
import sys
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from analysis.results import load_sweep, to_records
from hwsim.figures import LossColumns
from hwsim.models import registry
from hwsim.trace.errors import CliParser, HwsimError, cli_entry

DEFAULT_OBJECTIVES = {"linear_top1": "max", "time_us": "min", "energy_pj": "min"}
STRUCTURE = ("gate_method", "gate_S", "gate_b", "gate_G", "target_reduction", "gate_branches", "gate_align_weight",
             "gate_recipe")
EXPERIMENT = ("experiment",)
RTOL = 1e-9
LOSSES = ("granularity", "imbalance", "overhead", "memory")


def as_float(value: Any) -> float:
    if value is None or isinstance(value, (bool, str)):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def snap(value: float, scale: float = 1.0, rtol: float = RTOL) -> float:
    """``value`` or 0.0 where it is within ``rtol`` of ``|scale|`` of zero (float noise)."""
    return 0.0 if math.isfinite(value) and abs(value) <= rtol * abs(scale) else value


def _dominated(x: np.ndarray, others: np.ndarray, rtol: float) -> bool:
    diff = others - x
    scale = rtol * np.maximum(np.abs(others), np.abs(x))
    return bool(np.any(np.all(diff >= -scale, axis=1) & np.any(diff > scale, axis=1)))


def pareto_mask(values: Any, maximize: Sequence[bool], rtol: float = RTOL) -> np.ndarray:
    """Non-dominated rows of ``values`` (n, k). A row is dominated if another is at least as good
    in every objective and better by more than ``rtol`` (relative) in one; rows equal within
    ``rtol`` do not dominate each other. Rows with a NaN are never on the front."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[1] != len(maximize):
        raise HwsimError("pareto", "objectives", f"values of shape {v.shape} for {len(maximize)} objectives")
    keep = np.zeros(len(v), dtype=bool)
    if not len(v):
        return keep
    v = v * np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)
    idx = np.flatnonzero(np.all(np.isfinite(v), axis=1))
    # lexicographically best first: a dominator always comes before what it dominates
    order = idx[np.lexsort(tuple(-v[idx, j] for j in reversed(range(v.shape[1]))))]
    front = np.empty((len(order), v.shape[1]))
    n_front = 0
    for i in order:
        if n_front and _dominated(v[i], front[:n_front], rtol):
            continue
        keep[i] = True
        front[n_front] = v[i]
        n_front += 1
    # with a tolerance a dominator may sort after what it dominates: check the survivors against all
    for i in np.flatnonzero(keep):
        if _dominated(v[i], v[idx], rtol):
            keep[i] = False
    return keep


def _check_objectives(objectives: Mapping[str, str]) -> list[bool]:
    if not objectives:
        raise HwsimError("pareto", "objectives", "need at least one objective")
    out = []
    for col, sense in objectives.items():
        if sense not in ("min", "max"):
            raise HwsimError("pareto", f"objectives.{col}", f"must be 'min' or 'max', got {sense!r}")
        out.append(sense == "max")
    return out


def pareto_front(records: Any, objectives: Mapping[str, str] = DEFAULT_OBJECTIVES) -> list[dict]:
    """Records on the non-dominated front of ``objectives`` (column -> 'min' | 'max'), best first in
    the first objective. Records missing an objective are left out."""
    rows = to_records(records)
    maximize = _check_objectives(objectives)
    if rows:
        for col in objectives:
            if all(col not in r for r in rows):
                raise HwsimError("pareto", col, "no such column in the records")
    values = np.array([[as_float(r.get(c)) for c in objectives] for r in rows], dtype=float).reshape(len(rows), -1)
    mask = pareto_mask(values, maximize)
    front = [rows[i] for i in np.flatnonzero(mask)]
    first = next(iter(objectives))
    return sorted(front, key=lambda r: as_float(r.get(first)), reverse=maximize[0])


def _group(rows: Iterable[dict], by: Sequence[str]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[tuple(r.get(k) for k in by)].append(r)
    return dict(groups)


def fronts(records: Any, by: Sequence[str] = ("accel",),
           objectives: Mapping[str, str] = DEFAULT_OBJECTIVES) -> dict[tuple, list[dict]]:
    """The Pareto front of each group (default: each accelerator config, over runs and grid params)."""
    return {key: pareto_front(rows, objectives) for key, rows in _group(to_records(records), by).items()}


def _is_dense(candidate: Mapping[str, Any]) -> bool:
    return candidate["structure"].get("gate_method") in ("none", None)


def best_gate_structure(records: Any, tolerance: float = 0.01, accuracy: str = "linear_top1",
                        cost: str = "time_us", by: Sequence[str] = ("design",),
                        structure: Sequence[str] = STRUCTURE, experiment: Sequence[str] = EXPERIMENT) -> list[dict]:
    """For each group (default: each accelerator design = config + grid params) of one experiment
    (``experiment`` columns: only seeds of one experiment are averaged): the gate structure with
    the lowest mean ``cost`` among those whose mean ``accuracy`` (over seeds) is within
    ``tolerance`` of the group's most accurate structure (costs equal within ``RTOL``: the more
    accurate, then dense). Also reports the dense structure's cost (``gate_method`` none) where there is one."""
    if not (isinstance(tolerance, (int, float)) and not isinstance(tolerance, bool)
            and math.isfinite(tolerance) and tolerance >= 0):
        raise HwsimError("pareto", "tolerance", f"must be a finite number >= 0, got {tolerance!r}")
    by = tuple(by) + tuple(k for k in experiment if k not in by)
    out = []
    for key, rows in _group(to_records(records), by).items():
        cands = []
        for skey, srows in _group(rows, structure).items():
            acc = np.array([as_float(r.get(accuracy)) for r in srows])
            cst = np.array([as_float(r.get(cost)) for r in srows])
            ok = np.isfinite(acc) & np.isfinite(cst)
            if not ok.any():
                continue
            cands.append({"structure": dict(zip(structure, skey)), "accuracy": float(acc[ok].mean()),
                          "accuracy_std": float(acc[ok].std()), "cost": float(cst[ok].mean()), "n": int(ok.sum())})
        if not cands:
            continue
        ref = max(c["accuracy"] for c in cands)
        eligible = [c for c in cands if c["accuracy"] >= ref - tolerance - RTOL * abs(ref)]
        cheapest = min(c["cost"] for c in eligible)
        tied = [c for c in eligible if c["cost"] <= cheapest + RTOL * abs(cheapest)]
        top = max(c["accuracy"] for c in tied)
        best = min((c for c in tied if c["accuracy"] >= top - RTOL * abs(top)),
                   key=lambda c: (not _is_dense(c), c["cost"]))  # a tie with dense is no gain
        dense = [c for c in cands if _is_dense(c)]
        dense_cost = dense[0]["cost"] if dense else math.nan
        gain = dense_cost / best["cost"] if dense and best["cost"] else math.nan
        out.append({**dict(zip(by, key)), **best["structure"], "accuracy": best["accuracy"],
                    "accuracy_std": best["accuracy_std"], cost: best["cost"], "n_seeds": best["n"],
                    "reference_accuracy": ref, "tolerance": tolerance, "candidates": len(cands),
                    "eligible": len(eligible), f"dense_{cost}": dense_cost,
                    "gain_vs_dense": 1.0 + snap(gain - 1.0)})
    return out


def loss_columns(layer: Mapping[str, Any], model: str | None = None) -> LossColumns:
    """The columns of ``layer`` that hold the typed loss fields: those declared by ``model`` (a
    point's ``accel_model``), or for a row of unknown model, by the first registered model whose
    declared columns the row has (none: no skip units, no imbalance)."""
    if model in registry.names():
        return registry.get(model).loss_columns
    for name in registry.names():
        cols = registry.get(name).loss_columns
        declared = cols.columns()
        if declared and all(c in layer for c in declared.values()):
            return cols
    return LossColumns()


def layer_losses(layer: Mapping[str, Any], model: str | None = None) -> dict[str, float]:
    """The loss terms of one layer row (cycles per image) of an accelerator of ``model`` (see
    :func:`loss_columns`); see the module docstring."""
    D, Dc = as_float(layer.get("dense_total_cycles")), as_float(layer.get("dense_cycles"))
    T, C = as_float(layer.get("total_cycles")), as_float(layer.get("cycles"))
    dense_macs, needed = as_float(layer.get("dense_macs")), as_float(layer.get("needed_macs"))
    if not all(map(math.isfinite, (D, Dc, T, C, dense_macs, needed))):
        raise HwsimError("layers", f"layer {layer.get('layer')!r}",
                         "needs dense_total_cycles, dense_cycles, total_cycles, cycles, dense_macs, needed_macs")
    f = needed / dense_macs if dense_macs else 1.0
    compute = C - Dc * f
    cols = loss_columns(layer, model)
    units, run = cols.skip_units, cols.units_run
    if units in layer and run in layer and as_float(layer.get(units)) > 0:
        e = as_float(layer[run]) / as_float(layer[units])
        # units that ran, as compute time; never more than the compute time actually lost
        granularity = min(max(0.0, Dc * (e - f)), max(0.0, compute))
    else:
        e = C / Dc if Dc else 1.0
        granularity = 0.0
    imbalance = sum(as_float(layer[k]) for k in (cols.imbalance_cycles,)
                    if k in layer and math.isfinite(as_float(layer[k])))
    return {"dense_cycles": D, "ideal_cycles": D * f, "realised_cycles": T,
            "granularity": granularity, "imbalance": imbalance, "overhead": compute - granularity - imbalance,
            "memory": (T - C) - (D - Dc) * f, "executed_units": Dc * e, "dense_compute_cycles": Dc,
            "needed_macs": needed, "dense_macs": dense_macs}


def reduction_breakdown(points: Any, layers: Any,
                        by: Sequence[str] = ("design", "experiment", "gate_method", "gate_S", "gate_b")) -> list[dict]:
    """Where the FLOPs reduction goes, per group of points (sums over the points' layers): the ideal
    speed-up (time proportional to needed MACs), the realised one, and the share of the promised
    cycle saving lost to each of granularity, imbalance, overhead and memory (they sum, with the
    realised share, to 1). A promised saving within ``RTOL`` of the dense cycles is none (shares
    NaN: a dense run's float noise is not a saving to share out)."""
    prows = to_records(points)
    by_point: dict[Any, list[dict]] = defaultdict(list)
    for layer in to_records(layers):
        by_point[layer.get("point_id")].append(layer)
    out = []
    for key, rows in _group(prows, by).items():
        acc: dict[str, float] = defaultdict(float)
        n = 0
        for p in rows:
            lrows = by_point.get(p.get("point_id"))
            if not lrows:
                raise HwsimError("layers", f"point_id {p.get('point_id')!r}", "no layer rows for this point")
            n += 1
            for layer in lrows:
                for k, v in layer_losses(layer, p.get("accel_model")).items():
                    acc[k] += v
        scale = acc["dense_cycles"]
        promised = snap(acc["dense_cycles"] - acc["ideal_cycles"], scale)
        realised = snap(acc["dense_cycles"] - acc["realised_cycles"], scale)
        row = {**dict(zip(by, key)), "points": n,
               "flops_reduction": acc["dense_macs"] / acc["needed_macs"] if acc["needed_macs"] else math.nan,
               "ideal_speedup": acc["dense_cycles"] / acc["ideal_cycles"] if acc["ideal_cycles"] else math.nan,
               "speedup": acc["dense_cycles"] / acc["realised_cycles"] if acc["realised_cycles"] else math.nan,
               "needed_fraction": acc["needed_macs"] / acc["dense_macs"] if acc["dense_macs"] else math.nan,
               "executed_fraction": (acc["executed_units"] / acc["dense_compute_cycles"]
                                     if acc["dense_compute_cycles"] else math.nan),
               "promised_saving_cycles": promised / n, "realised_saving_cycles": realised / n,
               "realised_share": realised / promised if promised > 0 else math.nan}
        for loss in LOSSES:
            acc[loss] = snap(acc[loss], scale)
            row[f"lost_{loss}_cycles"] = acc[loss] / n
            row[f"lost_{loss}_share"] = acc[loss] / promised if promised > 0 else math.nan
        out.append(row)
    return out


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return "-" if v is None else str(v)


def _shown(row: Mapping[str, Any], col: str) -> Any:
    """A saving or share (a fraction of 1) within ``RTOL`` of zero is shown as 0, not -6.661e-16."""
    v = row.get(col)
    if isinstance(v, float) and col.endswith(("saving", "_share")):
        return snap(v)
    return v


def format_table(rows: list[dict], columns: Sequence[str], title: str) -> str:
    cells = [[_fmt(_shown(r, c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = [title, "  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


_Parser = CliParser  # one line, exit code 2


def main(argv: list[str] | None = None) -> int:
    @cli_entry
    def run() -> int:
        p = _Parser(prog="python -m analysis.pareto", description=__doc__.splitlines()[0])
        p.add_argument("--sweep", required=True, help="sweep directory written by python -m analysis.dse")
        p.add_argument("--accuracy", default="linear_top1", help="accuracy column (linear_top1 or knn_top1)")
        p.add_argument("--tolerance", type=float, default=0.01, help="accuracy tolerance for the best structure")
        p.add_argument("--cost", default="time_us", help="cost column for the best structure (time_us, energy_pj...)")
        p.add_argument("--by", choices=("accel", "design"), default="accel",
                       help="group by accelerator config, or by design (config + grid params)")
        args = p.parse_args(argv)
        points, layers, _meta = load_sweep(args.sweep)
        if not points:
            raise HwsimError(args.sweep, "points.csv", "no points (has the sweep run?)")
        for col in (args.accuracy, args.cost):
            if col not in points[0]:
                raise HwsimError(f"{args.sweep}/points.csv", col, "no such column")
        if all(as_float(r.get(args.accuracy)) != as_float(r.get(args.accuracy)) for r in points):
            raise HwsimError(f"{args.sweep}/points.csv", args.accuracy, "no point has a value (try --accuracy knn_top1)")
        objectives = {args.accuracy: "max", "time_us": "min", "energy_pj": "min"}
        blocks = []
        for key, front in sorted(fronts(points, (args.by,), objectives).items(), key=lambda kv: str(kv[0])):
            n = sum(1 for r in points if r.get(args.by) == key[0])
            blocks.append(format_table(front, ["run", "design", args.accuracy, "time_us", "energy_pj", "speedup",
                                               "energy_saving"],
                                       f"\nPareto front ({args.accuracy} max, time_us min, energy_pj min) "
                                       f"of {args.by} {key[0]}: {len(front)} of {n} points"))
        best = best_gate_structure(points, args.tolerance, args.accuracy, args.cost, (args.by,))
        blocks.append(format_table(best, [args.by, "experiment", "gate_method", "gate_S", "gate_b", "gate_G", "target_reduction",
                                          "accuracy", args.cost, f"dense_{args.cost}", "gain_vs_dense",
                                          "reference_accuracy", "eligible", "candidates"],
                                   f"\nBest gate structure per {args.by} and experiment (mean over the seeds of "
                                   f"one experiment; accuracy within {args.tolerance} of the best; lowest "
                                   f"{args.cost}; floats equal within a relative {RTOL:g})"))
        bd = reduction_breakdown(points, layers, (args.by, "experiment", "gate_method", "gate_S", "gate_b"))
        blocks.append(format_table(bd, [args.by, "experiment", "gate_method", "gate_S", "gate_b", "points", "flops_reduction",
                                        "ideal_speedup", "speedup", "realised_share"]
                                   + [f"lost_{x}_share" for x in LOSSES],
                                   "\nWhere the FLOPs reduction is lost (shares of the promised cycle saving)"))
        print("\n".join(blocks).lstrip("\n"))
        return 0

    return run()


if __name__ == "__main__":
    sys.exit(main())
