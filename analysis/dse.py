"""Design-space sweep: every run's trace x every accelerator x a grid of accelerator parameters.

    python -m analysis.dse --runs runs/* --accel accel_configs/*.yaml [--grid grid.yaml] --out DIR \
        [--workers N] [--ray [ADDRESS]] [--skip-untraced]

Each point (run, accelerator file, parameter assignment) is one ``hwsim.api.simulate_trace``. Results
go to ``DIR/journal.jsonl`` (appended, flushed and fsync'd per point), from which ``DIR/points.csv``,
``DIR/layers.csv`` and ``DIR/sweep.json`` are rebuilt atomically at the start and at the end of
every invocation. Re-running the same command skips every point already in the journal, so an
interrupted sweep resumes without recomputing or losing points. Output schema: docs/analysis.md.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from analysis.executors import import_ray, run_local, run_ray
from analysis.grid import Grid, apply, assignments, get_dotted, load_grid
from analysis.journal import JOURNAL, Journal, locked
from analysis.results import LAYERS_CSV, POINTS_CSV, SCHEMA_VERSION, SWEEP_JSON
from analysis.runs import RunInfo, find_run_dirs, load_runs
from analysis.worker import make_tasks
from hwsim.config import load_config
from hwsim.models.base import AccelConfig
from hwsim.trace.errors import CliParser, HwsimError, cli_entry
from hwsim.trace.fileio import atomic_open, atomic_write_json
from hwsim.trace.io import sha256

# leading columns of points.csv (the dashboard's contract); param.* columns follow the run/accel
# block, the totals follow them; any further total reported by a model is appended.
POINT_RUN_COLUMNS = ["point_id", "run", "run_group", "run_path", "backbone", "width", "dataset", "ssl_method",
                     "gate_method", "gate_S", "gate_b", "gate_G", "gate_branches", "gate_align_weight",
                     "target_reduction", "gate_recipe", "seed", "experiment", "image_size", "epochs", "steps",
                     "batch_size", "linear_top1", "knn_top1", "trained_reduction"]
POINT_ACCEL_COLUMNS = ["accel", "accel_file", "accel_model", "accel_mode", "design", "params"]
POINT_RESULT_COLUMNS = ["mask_source", "n_images", "clock_mhz", "peak_macs_per_cycle", "total_cycles",
                        "dense_total_cycles", "cycles", "dense_cycles", "speedup", "flops_reduction",
                        "zero_work_removed", "time_us", "dense_time_us", "energy_pj", "dense_energy_pj",
                        "energy_saving", "dram_bytes", "utilisation", "macs", "dense_macs", "needed_macs"]
LAYER_COLUMNS = ["point_id", "layer_index", "layer", "stage", "op", "gated", "gate_G", "gate_S", "gate_b",
                 "granularity", "mask_source", "cycles", "dense_cycles", "total_cycles", "dense_total_cycles",
                 "speedup", "flops_reduction", "zero_work_removed", "gate_density", "input_act_density",
                 "macs", "dense_macs", "needed_macs", "time_us", "utilisation", "dram_bytes", "energy_pj",
                 "dense_energy_pj", "energy_saving"]


# --------------------------------------------------------------------------------------------
# Points
# --------------------------------------------------------------------------------------------
@dataclass
class Accel:
    path: str                 # as given on the command line
    digest: str               # sha256 of the file's bytes
    cfg: AccelConfig


@dataclass
class Point:
    point_id: str
    run: RunInfo
    accel: Accel
    params: dict[str, Any]
    cfg: AccelConfig          # the accelerator with the params applied


def point_id(run_path: str, trace_digest: str, accel_digest: str, params: dict) -> str:
    """Stable id: the run's resolved path, its trace (MANIFEST digest), the accelerator file's content
    and the parameter assignment. Changing any of them makes a new point; nothing else does."""
    key = json.dumps({"run": run_path, "trace": trace_digest, "accel": accel_digest, "params": params},
                     sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def load_accels(paths: Sequence[str]) -> list[Accel]:
    if not paths:
        raise HwsimError("--accel", "accel", "no accelerator configs given")
    out, seen, names = [], set(), {}
    for p in paths:
        if os.path.realpath(p) in seen:
            continue
        seen.add(os.path.realpath(p))
        cfg = load_config(p)
        if cfg.name in names:  # points, fronts and figures are keyed by the name
            raise HwsimError(str(p), "name", f"{cfg.name!r} is also the name of {names[cfg.name]}; "
                                             "give every accelerator config its own name")
        names[cfg.name] = str(p)
        out.append(Accel(str(p), sha256(p), cfg))
    return out


def expand_points(runs: Sequence[RunInfo], accels: Sequence[Accel], grid: Grid) -> list[Point]:
    """Every (run, accel, assignment); each assignment is applied and validated once per accel."""
    designs: list[tuple[Accel, dict, AccelConfig]] = []
    used_models = {a.cfg.model for a in accels}
    for model in grid.per_model:
        if model not in used_models:
            raise HwsimError(grid.source, model, f"per-model section, but no --accel config has model {model!r}")
    for accel in accels:
        for assignment in assignments(grid, accel.cfg.model):
            designs.append((accel, assignment, apply(accel.cfg, assignment, accel.path)))
    points, seen = [], set()
    for run in runs:
        for accel, assignment, cfg in designs:
            pid = point_id(run.run_path, run.trace_digest, accel.digest, assignment)
            if pid not in seen:
                seen.add(pid)
                points.append(Point(pid, run, accel, assignment, cfg))
    return points


# --------------------------------------------------------------------------------------------
# CSV rebuild
# --------------------------------------------------------------------------------------------
def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return repr(value)
    return value


def _write_csv(path: Path, leading: list[str], rows: list[dict]) -> None:
    columns = list(leading)
    seen = set(columns)
    for row in rows:
        for key in row:
            if key not in seen:
                seen.add(key)
                columns.append(key)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    with atomic_open(path, "w") as handle:
        handle.write(buf.getvalue())


def design_label(accel: Accel, params: dict) -> str:
    if not params:
        return accel.cfg.name
    return f"{accel.cfg.name}[" + ",".join(f"{k}={json.dumps(v, default=str)}" for k, v in params.items()) + "]"


def point_row(p: Point, rec: dict, param_keys: Sequence[str]) -> dict:
    row = {"point_id": p.point_id}
    row.update({k: v for k, v in p.run.columns().items() if k not in ("trace_path",)})
    row.update({"accel": p.cfg.name, "accel_file": p.accel.path, "accel_model": p.cfg.model,
                "accel_mode": rec["result"].get("accel_mode"), "design": design_label(p.accel, p.params),
                "params": p.params})
    dump = p.cfg.model_dump()
    for key in param_keys:
        found, value = get_dotted(dump, key)
        row[f"param.{key}"] = value if found else None
    row.update({k: v for k, v in rec["result"].items() if k != "accel_mode"})
    return row


def rebuild_outputs(out: Path, points: Sequence[Point], journal: Journal, grid: Grid,
                    definition: dict, extra: dict) -> dict:
    """points.csv, layers.csv (the sweep's points found in the journal, in sweep order), sweep.json."""
    param_keys = grid.keys
    prows, lrows = [], []
    for p in points:
        rec = journal.records.get(p.point_id)
        if rec is None:
            continue
        prows.append(point_row(p, rec, param_keys))
        for layer in rec["layers"]:
            lrows.append({"point_id": p.point_id, **layer})
    leading = POINT_RUN_COLUMNS + POINT_ACCEL_COLUMNS + [f"param.{k}" for k in param_keys] + POINT_RESULT_COLUMNS
    _write_csv(out / POINTS_CSV, leading, prows)
    _write_csv(out / LAYERS_CSV, LAYER_COLUMNS, lrows)
    ids = {p.point_id for p in points}
    counts = {"points": len(points), "done": len(prows), "missing": len(points) - len(prows),
              "journal_records": len(journal.records),
              "journal_records_outside_sweep": sum(1 for k in journal.records if k not in ids),
              "journal_lines_dropped": journal.dropped, "layer_rows": len(lrows)}
    doc = {"schema_version": SCHEMA_VERSION, **definition, "counts": counts, **extra}
    atomic_write_json(out / SWEEP_JSON, doc)
    return counts


# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    out: Path
    counts: dict
    computed: int
    reused: int
    seconds: float

    @property
    def points_per_s(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else float("nan")


def run_sweep(runs: Sequence[str], accels: Sequence[str], out: str | os.PathLike, grid: str | Grid | None = None,
              workers: int | None = None, ray: bool = False, ray_address: str | None = None,
              ray_init: dict | None = None, skip_untraced: bool = False, progress: bool = True,
              chunk: int | None = None) -> SweepResult:
    """Run (or resume) a sweep; returns counts. ``runs``: run dirs, parent dirs or globs; ``accels``:
    accelerator YAMLs; ``grid``: a grid YAML path, a :class:`Grid`, or None (each config as written)."""
    t0 = time.perf_counter()
    runs = [str(runs)] if isinstance(runs, (str, os.PathLike)) else [str(r) for r in runs]
    accels = [str(accels)] if isinstance(accels, (str, os.PathLike)) else [str(a) for a in accels]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HwsimError(str(out), "--out", "exists and is not a directory")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise HwsimError("--workers", "workers", f"expected an integer >= 1, got {workers!r}")
    workers = workers or os.cpu_count() or 1
    if ray:
        import_ray()
    run_infos, skipped = load_runs(find_run_dirs(runs), skip_untraced=skip_untraced)
    accel_list = load_accels(list(accels))
    grid_obj = grid if isinstance(grid, Grid) else (load_grid(grid) if grid is not None else Grid.empty())
    points = expand_points(run_infos, accel_list, grid_obj)
    definition = {"runs": [r.run_path for r in run_infos], "skipped_untraced": skipped,
                  "accels": [{"file": a.path, "name": a.cfg.name, "model": a.cfg.model, "sha256": a.digest}
                             for a in accel_list],
                  "grid": grid_obj.to_json(), "param_columns": [f"param.{k}" for k in grid_obj.keys]}
    with locked(out):
        journal = Journal(out / JOURNAL)
        try:
            todo = [p for p in points if p.point_id not in journal.records]
            reused = len(points) - len(todo)
            executor = "ray" if ray else ("serial" if workers <= 1 else f"processes x{workers}")
            extra = {"executor": executor, "status": "running"}
            rebuild_outputs(out, points, journal, grid_obj, definition, extra)
            if chunk is None:
                chunk = max(1, min(16, len(todo) // max(1, 4 * workers)))
            tasks = make_tasks(todo, chunk)
            bar = tqdm(total=len(todo), desc="dse", unit="pt", disable=not progress or not todo,
                       initial=0, smoothing=0.1)
            computed = 0

            def on_result(records: list[dict]) -> None:
                nonlocal computed
                for rec in records:
                    if "error" in rec:
                        raise HwsimError(*rec["error"])
                    journal.append(rec)
                    computed += 1
                bar.update(len(records))

            try:
                if todo:
                    if ray:
                        run_ray(tasks, ray_address, ray_init, on_result)
                    else:
                        run_local(tasks, workers, on_result)
            finally:
                bar.close()
                elapsed = time.perf_counter() - t0
                status = "complete" if computed == len(todo) else "interrupted"
                extra.update(status=status, last_invocation={"computed": computed, "reused": reused,
                                                             "seconds": round(elapsed, 3)})
                counts = rebuild_outputs(out, points, journal, grid_obj, definition, extra)
        finally:
            journal.close()
    return SweepResult(out, counts, computed, reused, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
_Parser = CliParser  # one line, exit code 2


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m analysis.dse", description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True,
                   help="run directories, directories holding runs (searched recursively) or quoted globs")
    p.add_argument("--accel", nargs="+", required=True, help="accelerator YAMLs (accel_configs/*.yaml)")
    p.add_argument("--grid", help="grid YAML: dotted config keys -> lists of values, optionally per model")
    p.add_argument("--out", required=True, help="output directory (points.csv, layers.csv, sweep.json, journal)")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: CPU count)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the tasks on Ray: a local Ray instance, or the cluster at ADDRESS")
    p.add_argument("--skip-untraced", action="store_true", help="leave out runs without a trace instead of failing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


@cli_entry(interrupted="interrupted: computed points are kept in the journal; re-run the same command to resume")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers is not None and args.workers < 1:
        raise HwsimError("--workers", "workers", f"expected an integer >= 1, got {args.workers}")
    res = run_sweep(args.runs, args.accel, args.out, grid=args.grid, workers=args.workers,
                    ray=args.ray is not None, ray_address=args.ray or None,
                    skip_untraced=args.skip_untraced, progress=not args.no_progress)
    c = res.counts
    print(f"{c['done']}/{c['points']} points in {res.out} ({res.computed} computed, {res.reused} reused from "
          f"the journal) in {res.seconds:.1f} s, {res.points_per_s:.1f} points/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
