"""One self-contained HTML dashboard of a sweep (plotly.js embedded: works offline, no requests).

    python -m analysis.dashboard --sweep DIR --out report.html [--accuracy linear_top1|knn_top1]
        [--point POINT_ID ...] [--png PNG_DIR]

Reads ``DIR/points.csv``, ``DIR/layers.csv`` and ``DIR/sweep.json`` (written by
``python -m analysis.dse``) and each run's ``metrics.jsonl`` (``run_path`` column), and writes,
after a header with the sweep summary:

- ``pareto``: accuracy vs latency and vs energy, the non-dominated front per accelerator;
- ``parcoords``: parallel coordinates over design parameters and outcomes;
- ``layers``: per-layer cycles and energy by component of one point per accelerator;
- ``gate_density``: gate density heat maps, runs x gated layers and runs x stages;
- ``speedup``: FLOPs reduction vs realised speed-up per accelerator, with y = x;
- ``training``: loss and kNN top-1 per epoch of every run;
- ``masks``: where each run's gates computed, per stage, on a few test images of its trace
  (``analysis/mask_figures.py``).

``--png PNG_DIR`` also writes ``<name>.png`` of each figure with kaleido where it is installed and
can start Chrome/Chromium; otherwise one line says why PNG export is unavailable (the HTML is
written either way). User mistakes are one line on stderr and exit code 2 (``hwsim.trace.errors``).
"""
from __future__ import annotations

import html
import json
import math
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from analysis import figures as F
from analysis import mask_figures
from analysis import training_figures as T
from analysis.figure_style import is_dense, si_pj
from analysis.pareto import snap
from analysis.results import load_tables
from analysis.validation_plot import validation_figure
from hwsim.trace.errors import CliParser, HwsimError, cli_entry
from hwsim.trace.fileio import atomic_write_bytes, atomic_write_text
from hwsim.trace.layout import METRICS_FILE

POINT_COLUMNS = ("point_id", "run", "run_path", "gate_method", "gate_S", "gate_b", "accel", "accel_model",
                 "total_cycles", "speedup", "flops_reduction", "time_us", "energy_pj")
LAYER_COLUMNS = ("point_id", "layer", "stage", "cycles", "total_cycles", "speedup", "flops_reduction",
                 "gate_density", "energy_pj")
ACCURACY_COLUMNS = ("linear_top1", "knn_top1")
FIGURES = ("pareto", "parcoords", "layers", "gate_density", "speedup", "training", "masks")
SECTION_TITLES = {
    "pareto": "Pareto fronts: accuracy vs latency and energy",
    "parcoords": "Design space (parallel coordinates)",
    "layers": "Per-layer cycles and energy",
    "gate_density": "Gate density per layer and stage",
    "speedup": "FLOPs reduction vs realised speed-up",
    "training": "Training curves",
    "validation": "Sparse execution: predicted vs measured (cpu model)",
    "masks": "Where each run computes (gate maps)",
}
SECTION_NOTES = {
    "pareto": "Each marker is one (run, accelerator, grid assignment); diamonds joined by a step line are the points "
              "no other point of the same accelerator beats in both accuracy and cost. Hover for details; click a "
              "legend entry to hide an accelerator.",
    "parcoords": "Drag along an axis to select a range; the other axes show what the selection implies. "
                 "Categorical axes (accelerator, gate method, S = all) are drawn as indexed ticks.",
    "layers": "Compute cycles plus the memory-bound remainder (total - compute) make up each layer's time; the "
              "black tick is the dense layer's total. Energy is stacked by the model's components.",
    "gate_density": "Fraction of gates open, mean over the evaluation images of each run's trace "
                    "(a run property: the same for every accelerator). Blank: layer not gated in that run.",
    "speedup": "Points on the dashed line turn every removed MAC into saved time; below it the hardware loses "
               "part of the FLOPs reduction (granularity, overhead, memory).",
    "training": "From each run's metrics.jsonl: 'train' events (loss, logged within epochs) and 'knn' events; for "
                "gated runs also gate_ratio (fraction of the dense MACs the gates kept in that step; dotted: the "
                "scheduled target) and the forward MACs per step (train_macs_ideal: what a skipping executor "
                "would run; dotted train_macs_performed: what the masked dense loop ran). Dense (ungated) runs "
                "are dashed.",
    "validation": "From the sweep's validation.json (python -m analysis.validate --sweep): measured executor speed-ups "
                  "against the cpu model's predictions; on the dashed line the prediction is exact.",
    "masks": "From each run's trace masks: per stage, the fraction of output channels computed at each pixel "
             "(red: all, blue: none) over a grey proxy of the input (non-zero stem-output channels), for the "
             "first test images. Runs without gate masks (dense) are left out.",
}


@dataclass
class Sweep:
    path: Path
    points: list[dict]
    layers: list[dict]
    meta: dict
    point_columns: list[str]
    layers_by_point: dict[Any, list[dict]] = field(default_factory=dict)
    validation: dict | None = None    # validation.json, where python -m analysis.validate --sweep wrote one


def load(sweep_dir: str | Path) -> Sweep:
    """Read and check a sweep directory (``analysis.sweepcheck``); every problem is a
    :class:`HwsimError` naming the file, line and column."""
    root = Path(sweep_dir)
    if not root.exists():
        raise HwsimError(str(root), "--sweep", "no such directory")
    if not root.is_dir():
        raise HwsimError(str(root), "--sweep", "not a directory")
    if not any(root.iterdir()):
        raise HwsimError(str(root), "--sweep", "empty directory (run python -m analysis.dse --out here first)")
    points, layers, meta = load_tables(root, POINT_COLUMNS, LAYER_COLUMNS,
                                       ("needed for the dashboard", "needed for the per-layer figures"))
    by_point: dict[Any, list[dict]] = defaultdict(list)
    for row in layers.rows:
        by_point[row.get("point_id")].append(row)
    return Sweep(root, points.rows, layers.rows, meta, points.columns, dict(by_point),
                 _validation(root / "validation.json"))


def _validation(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise HwsimError(str(path), "json", f"not valid JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise HwsimError(str(path), "rows", "expected an object with a list 'rows' (python -m analysis.validate)")
    return doc


def pick_accuracy(sweep: Sweep, requested: str | None) -> str:
    path = str(sweep.path / "points.csv")
    if requested is not None:
        if requested not in sweep.point_columns:
            raise HwsimError(path, requested, "column missing (--accuracy)")
        if not any(math.isfinite(F.num(p.get(requested))) for p in sweep.points):
            raise HwsimError(path, requested, "no point has a value (--accuracy)")
        return requested
    present = [c for c in ACCURACY_COLUMNS if c in sweep.point_columns]
    if not present:
        raise HwsimError(path, "linear_top1", "column missing (and no knn_top1 either)")
    for col in present:
        if any(math.isfinite(F.num(p.get(col))) for p in sweep.points):
            return col
    raise HwsimError(path, present[0], f"no point has an accuracy ({', '.join(present)} are all empty)")


def chosen_points(sweep: Sweep, accuracy: str, point_ids: Sequence[str] | None) -> list[dict]:
    if not point_ids:
        return F.representative_points(sweep.points, accuracy)
    by_id = {str(p.get("point_id")): p for p in sweep.points}
    out = []
    for pid in point_ids:
        if pid not in by_id:
            raise HwsimError("--point", pid, f"no such point_id in {sweep.path / 'points.csv'}")
        out.append(by_id[pid])
    return out


def training_curves(sweep: Sweep, warn=print) -> tuple[dict[str, dict], list[str], list[str]]:
    """Curves of each run (by ``run_path``, first occurrence order), the runs without metrics and
    the ungated (dense) runs among the curves."""
    curves: dict[str, dict] = {}
    missing: list[str] = []
    dense: list[str] = []
    seen: set[str] = set()
    for p in sweep.points:
        run_path = p.get("run_path")
        key = str(run_path)
        if key in seen:
            continue
        seen.add(key)
        label = str(p.get("run"))
        if label in curves:  # two run dirs with the same name (different groups)
            label = f"{p.get('run_group', '')}/{label}"
        path = Path(key) / METRICS_FILE if run_path else None
        if path is not None and not path.is_absolute() and not path.exists():
            path = sweep.path / path
        if path is None or not path.is_file():
            missing.append(label)
            warn(f"warning: {path or 'run_path'}: missing; the training curves leave run {label} out")
            continue
        events, bad = T.read_metrics(path)
        if bad:
            warn(f"warning: {path}: {bad} lines that are not JSON objects skipped")
        curves[label] = T.curves_of(events)
        if is_dense(p):
            dense.append(label)
    return curves, missing, dense


@dataclass
class Dashboard:
    html: str
    figures: dict[str, Any]
    accuracy: str
    chosen: list[dict]
    missing_metrics: list[str]
    run_dirs: tuple[str, ...] = ()  # the run directories it read (``run_path``), which --out must not hit


def build(sweep_dir: str | Path, accuracy: str | None = None, point_ids: Sequence[str] | None = None,
          warn=None) -> Dashboard:
    """Load the sweep and build every figure and the HTML page (not written)."""
    warn = warn or (lambda msg: print(msg, file=sys.stderr, flush=True))
    sweep = load(sweep_dir)
    acc = pick_accuracy(sweep, accuracy)
    chosen = chosen_points(sweep, acc, point_ids)
    curves, missing, dense = training_curves(sweep, warn)
    figs = {
        "pareto": F.pareto_figure(sweep.points, acc),
        "parcoords": F.parcoords_figure(sweep.points, acc),
        "layers": F.layer_bars_figure(chosen, sweep.layers_by_point, acc),
        "gate_density": F.gate_density_figure(sweep.points, sweep.layers_by_point),
        "speedup": F.speedup_figure(sweep.points, sweep.layers_by_point, acc),
        "training": T.training_figure(curves, missing, dense),
        "masks": mask_figures.mask_overlay_figure(mask_figures.run_traces(sweep.points, sweep.path), warn=warn),
    }
    if sweep.validation is not None:
        figs["validation"] = validation_figure(sweep.validation.get("rows", []), sweep.validation.get("summary", {}))
    page = render_html(sweep, acc, chosen, figs, point_ids_given=bool(point_ids))
    run_dirs = tuple(sorted({str(p["run_path"]) for p in sweep.points if p.get("run_path")}))
    return Dashboard(page, figs, acc, chosen, missing, run_dirs)


def refuse_own_inputs(out: Path, dirs: Sequence[str | Path]) -> None:
    """``--out`` inside the sweep directory or a run directory it reads must be an ``.html`` file:
    anything else (``journal.jsonl``, ``sweep.json``, ``points.csv``, a run's ``metrics.jsonl``)
    is one of the dashboard's own inputs, and replacing it with HTML would lose the sweep.
    Paths are resolved first, so a symlink to one of them is caught too."""
    target = out.resolve()
    if target.suffix.lower() in (".html", ".htm"):
        return
    for where in dirs:
        root = Path(where).resolve()
        if root == target or root in target.parents:
            raise HwsimError(str(out), "--out", f"is inside {where}, whose files the dashboard reads; "
                                                "give an .html file name (or a path outside it)")


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------
CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 2em 3em; color: #222; }
header { border-bottom: 1px solid #ccc; margin-bottom: 1em; }
h1 { font-size: 1.5em; margin: 0.8em 0 0.3em; }
h2 { font-size: 1.2em; margin: 1.6em 0 0.2em; }
p.note { color: #555; margin: 0.2em 0 0.6em; max-width: 70em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
th { background: #f3f3f3; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: 2px 1em; margin: 0.5em 0; }
dl.summary dt { font-weight: 600; }
dl.summary dd { margin: 0; }
nav a { margin-right: 1em; }
code { background: #f5f5f5; padding: 0 3px; }
"""


def _e(value: Any) -> str:
    return html.escape(F._fmt(value))


def summary_html(sweep: Sweep, accuracy: str, chosen: Sequence[Mapping], point_ids_given: bool) -> str:
    points, meta = sweep.points, sweep.meta
    runs = list(dict.fromkeys(str(p.get("run")) for p in points))
    methods = Counter(str(p.get("gate_method")) for p in {str(p.get("run")): p for p in points}.values())
    accels = F.by_accel(points)
    params = F.param_columns(points)
    counts = meta.get("counts") if isinstance(meta.get("counts"), dict) else {}
    grid = meta.get("grid") if isinstance(meta.get("grid"), dict) else {}
    items = [
        ("sweep", f"<code>{html.escape(str(sweep.path))}</code> (status {_e(meta.get('status'))}"
                  + (f", {_e(counts.get('done'))} of {_e(counts.get('points'))} points done" if counts else "") + ")"),
        ("points", f"{len(points)} points, {len(sweep.layers)} layer rows"),
        ("runs", f"{len(runs)} runs; gate methods: "
                 + ", ".join(f"{html.escape(m)} ({n})" for m, n in sorted(methods.items()))),
        ("accelerators", ", ".join(f"{html.escape(a)} [{_e(rows[0].get('accel_model'))}] ({len(rows)} points)"
                                   for a, rows in accels.items())),
        ("grid", (", ".join(f"<code>{html.escape(c[len('param.'):])}</code>: "
                            + ", ".join(sorted({_e(p.get(c)) for p in points})) for c in params)
                  or "none") + (f" (from {_e(grid.get('source'))})" if grid.get("source") else "")),
        ("accuracy", f"<code>{html.escape(accuracy)}</code>"),
    ]
    skipped = meta.get("skipped_untraced")
    if skipped:
        items.append(("skipped (untraced)", f"{len(skipped)} runs"))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    head = ["accelerator", "model", "points", f"best {accuracy}", "front size (acc/latency)", "min latency (us)",
            "min energy", "max speed-up", "max energy saving", "per-layer point" + (" (--point)" if point_ids_given
                                                                                     else " (representative)")]
    chosen_by_accel = defaultdict(list)
    for p in chosen:
        chosen_by_accel[str(p.get("accel"))].append(p)
    body = []
    for accel, rows in accels.items():
        def best(col, fn):
            vals = [F.num(r.get(col)) for r in rows if math.isfinite(F.num(r.get(col)))]
            return fn(vals) if vals else math.nan
        rep = "; ".join(f"{_e(p.get('run'))} <code>{_e(p.get('point_id'))}</code>"
                        for p in chosen_by_accel[accel]) or "-"
        cells = [html.escape(accel), _e(rows[0].get("accel_model")), str(len(rows)), _e(best(accuracy, max)),
                 str(len(F.front_of(rows, accuracy, "time_us"))), _e(best("time_us", min)), html.escape(si_pj(best("energy_pj", min))),
                 _e(best("speedup", max)), _e(snap(best("energy_saving", max))), rep]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table = ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + "".join(body)
             + "</table>")
    return f'<dl class="summary">{dl}</dl>{table}'


def figure_div(name: str, fig) -> str:
    import plotly.io as pio

    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=f"fig-{name}",
                       default_width="100%", config={"displaylogo": False, "responsive": True})


def render_html(sweep: Sweep, accuracy: str, chosen: Sequence[Mapping], figs: Mapping[str, Any],
                point_ids_given: bool = False) -> str:
    from plotly.offline import get_plotlyjs

    title = f"Sweep dashboard: {sweep.path.resolve().name}"
    nav = " ".join(f'<a href="#sec-{n}">{html.escape(SECTION_TITLES[n])}</a>' for n in figs)
    sections = "".join(
        f'<section id="sec-{n}"><h2>{html.escape(SECTION_TITLES[n])}</h2>'
        f'<p class="note">{html.escape(SECTION_NOTES[n])}</p>{figure_div(n, fig)}</section>\n'
        for n, fig in figs.items())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n"
        "<script type=\"text/javascript\">window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script>\n</head>\n<body>\n"
        f"<header><h1>{html.escape(title)}</h1>{summary_html(sweep, accuracy, chosen, point_ids_given)}"
        f"<nav>{nav}</nav></header>\n{sections}</body>\n</html>\n"
    )


# --------------------------------------------------------------------------------------------
# PNG export (optional: kaleido)
# --------------------------------------------------------------------------------------------
def export_pngs(figs: Mapping[str, Any], out_dir: str | Path) -> tuple[list[Path], str | None]:
    """Write ``<name>.png`` per figure; returns (files, None), or ([], why it is unavailable)."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return [], ("PNG export unavailable: kaleido is not installed (pip install kaleido; kaleido 1.x also "
                    "needs Chrome or Chromium, e.g. apt-get install chromium)")
    import plotly.io as pio

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise HwsimError(str(out), "--png", "exists and is not a directory")
    written = []
    for name, fig in figs.items():
        try:
            data = pio.to_image(fig, format="png", width=1400, height=int(fig.layout.height or 520))
        except Exception as exc:  # kaleido raises its own types when Chrome is missing or fails
            first = " ".join(str(exc).split())[:300] or type(exc).__name__
            return written, f"PNG export unavailable: kaleido could not render ({type(exc).__name__}: {first})"
        path = out / f"{name}.png"
        atomic_write_bytes(path, data)
        written.append(path)
    return written, None


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
_Parser = CliParser  # one line, exit code 2


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="python -m analysis.dashboard", description=__doc__.splitlines()[0])
    p.add_argument("--sweep", required=True, help="sweep directory written by python -m analysis.dse")
    p.add_argument("--out", required=True, help="HTML file to write (self-contained)")
    p.add_argument("--accuracy", choices=ACCURACY_COLUMNS, default=None,
                   help="accuracy column (default: linear_top1, or knn_top1 where no point has a linear top-1)")
    p.add_argument("--point", action="append", default=None, metavar="POINT_ID",
                   help="point for the per-layer figure (repeatable; default: one representative per accelerator)")
    p.add_argument("--png", default=None, metavar="DIR", help="also write a PNG per figure here (needs kaleido)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.is_dir():
        raise HwsimError(str(out), "--out", "is a directory (give an .html file name)")
    refuse_own_inputs(out, [args.sweep])  # before reading: no work is done for a refused --out
    dash = build(args.sweep, args.accuracy, args.point)
    refuse_own_inputs(out, dash.run_dirs)
    atomic_write_text(out, dash.html)
    print(f"wrote {out} ({len(dash.html.encode()) / 1e6:.1f} MB, {len(dash.figures)} figures, "
          f"accuracy {dash.accuracy})")
    if args.png is not None:
        files, why = export_pngs(dash.figures, args.png)
        if why:
            print(why, file=sys.stderr, flush=True)
        else:
            print(f"wrote {len(files)} PNGs to {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
