"""The dashboard's mask-overlay figure: where each run's gates computed, per stage, on a few test
images, from the masks its trace stores (``hwsim.trace.mask_maps``; ``python -m cdg.masks``
draws the same maps over the input images as PNG).

One row per (run, image), one column per stage: the stage's gate map (fraction of output
channels computed per pixel) as a heat map over the input proxy the trace holds (fraction of
non-zero stem-output channels, grey), so the shape of the object shows through.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hwsim.trace import load_trace
from hwsim.trace.errors import UserError
from hwsim.trace.layout import TRACE_DIR
from hwsim.trace.mask_maps import input_proxy, stage_gate_maps

IMAGES_PER_RUN = 2
MAX_RUNS = 8
TEMPLATE = "plotly_white"


def run_traces(points: Sequence[Mapping], sweep_dir: Path) -> dict[str, Path]:
    """Trace directory of each run of the sweep (first point of each ``run_path``, at most
    ``MAX_RUNS``), by run label; a relative ``run_path`` that does not exist is read against the sweep."""
    traces: dict[str, Path] = {}
    for p in points:
        run_path = p.get("run_path")
        if not run_path:
            continue
        path = Path(str(run_path))
        if not path.is_absolute() and not path.exists():
            path = sweep_dir / path
        label = f"{p.get('run')} ({p.get('gate_method')})"
        if label not in traces and path not in traces.values() and len(traces) < MAX_RUNS:
            traces[label] = path / TRACE_DIR
    return traces


def centres(shape: tuple[int, int]) -> dict[str, list[float]]:
    """Cell centres of an h x w map on the unit square, so maps of any resolution overlay."""
    h, w = shape
    return {"x": [(j + 0.5) / w for j in range(w)], "y": [(i + 0.5) / h for i in range(h)]}


def mask_overlay_figure(traces: Mapping[str, Path], images: int = IMAGES_PER_RUN, warn=print) -> go.Figure:
    """Rows (run, image) x columns stage. Runs without a trace directory or without gate masks
    (dense runs) are left out and counted in the title; a trace that cannot be read also warns."""
    rows: list[tuple[str, int, dict, object]] = []
    left_out = 0
    for label, path in traces.items():
        if not path.is_dir():
            left_out += 1
            continue
        try:
            trace = load_trace(path)
            n = min(images, trace.n_mask_images)
            maps = stage_gate_maps(trace, n)
            proxy = input_proxy(trace, n)
        except UserError as exc:  # HwsimError (unreadable trace) is a UserError too
            if "no gated layer" not in str(exc):
                warn(f"warning: {path}: {exc}; the mask figure leaves run {label} out")
            left_out += 1
            continue
        rows += [(label, i, {s: m[i] for s, m in maps.items()}, None if proxy is None else proxy[i]) for i in range(n)]
    stages = list(dict.fromkeys(s for _, _, maps, _ in rows for s in maps))
    fig = make_subplots(rows=max(1, len(rows)), cols=max(1, len(stages)), horizontal_spacing=0.02,
                        vertical_spacing=0.03 if len(rows) > 1 else 0.0,
                        row_titles=[f"{label} #{i}" for label, i, _, _ in rows] or None,
                        column_titles=stages or None)
    for r, (label, i, maps, proxy) in enumerate(rows, start=1):
        for c, stage in enumerate(stages, start=1):
            if stage not in maps:
                continue
            if proxy is not None:
                fig.add_trace(go.Heatmap(z=proxy, **centres(proxy.shape), colorscale="Greys", reversescale=True, showscale=False,
                                         zmin=0.0, zmax=1.0, hoverinfo="skip"), row=r, col=c)
            fig.add_trace(go.Heatmap(
                z=maps[stage], **centres(maps[stage].shape), zmin=0.0, zmax=1.0, colorscale="RdBu", reversescale=True, opacity=0.6,
                showscale=(r == 1 and c == 1), colorbar=dict(title=dict(text="channels computed")),
                name=f"{label} #{i} {stage}",
                hovertemplate=f"{label} image {i} {stage}<br>x %{{x:.2f}} y %{{y:.2f}}<br>"
                              "fraction computed %{z:.2f}<extra></extra>"), row=r, col=c)
    # plotly draws row titles vertically at the right edge, where long run labels ran into each
    # other and into the colour bar: horizontal, left-aligned, with the colour bar beyond them
    fig.for_each_annotation(lambda a: a.update(textangle=0, xanchor="left", x=1.01, font_size=11)
                            if a.textangle == 90 else None)
    fig.update_traces(colorbar=dict(x=1.2, xanchor="left", len=min(1.0, 600 / max(320, 140 + 150 * len(rows)))),
                      selector=dict(showscale=True))
    fig.update_xaxes(showticklabels=False, range=[0, 1])
    fig.update_yaxes(showticklabels=False, range=[1, 0])
    title = "Where each run computes: gate maps per stage over the input proxy"
    if not rows:
        title += ": no run of this sweep has gate masks in its trace"
    elif left_out:
        title += f" ({left_out} runs without trace gate masks left out)"
    fig.update_layout(template=TEMPLATE, height=max(320, 140 + 150 * len(rows)), title=title, margin=dict(r=300))
    return fig
