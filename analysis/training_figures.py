"""Training curves of a sweep's runs, from each run's ``metrics.jsonl`` (``analysis.dashboard``).

Loss and kNN top-1 for every run; for gated runs also the fraction of MACs the gates kept
(``gate_ratio``, effective / dense MACs of the step, with the scheduled ``gate_target``) and the
forward MACs per training step (``train_macs_ideal``: what a skipping executor would need, against
``train_macs_performed``: what the masked dense loop ran), so sparsification is seen as it happens.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.figure_style import DENSE_LABEL, RUN_PALETTE, TEMPLATE, fitted_range, num

Series = tuple[list[float], list[float]]
TRAIN_SERIES = {"loss": "loss", "gate_ratio": "gate_ratio", "gate_target": "gate_target",
                "macs_ideal": "train_macs_ideal", "macs_performed": "train_macs_performed"}


def read_metrics(path: Path) -> tuple[list[dict], int]:
    """Events of a ``metrics.jsonl`` and the number of lines that did not parse (a run still
    writing may end in a cut line)."""
    events, bad = [], 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(obj, dict):
                events.append(obj)
            else:
                bad += 1
    return events, bad


def curves_of(events: Iterable[Mapping]) -> dict[str, Series]:
    """Per series (epoch, value): ``loss``, ``gate_ratio``, ``gate_target``, ``macs_ideal`` and
    ``macs_performed`` from every "train" event that has it (epoch fractional within an epoch),
    ``knn`` (top-1) from every "knn" event."""
    out: dict[str, Series] = {key: ([], []) for key in (*TRAIN_SERIES, "knn")}
    for e in events:
        kind, epoch = e.get("event"), num(e.get("epoch"))
        if not math.isfinite(epoch):
            continue
        if kind == "train":
            for key, field in TRAIN_SERIES.items():
                value = num(e.get(field))
                if math.isfinite(value):
                    out[key][0].append(epoch)
                    out[key][1].append(value)
        elif kind == "knn":
            top1 = num(e.get("top1", e.get("knn_top1")))
            if math.isfinite(top1):
                out["knn"][0].append(epoch)
                out["knn"][1].append(top1)
    return out


def _line(c: Mapping[str, Series], key: str, run: str, colour: str, show: bool, what: str, fmt: str,
          dash: str = "solid", markers: bool = False) -> go.Scatter:
    return go.Scatter(x=c[key][0], y=c[key][1], mode="lines+markers" if markers else "lines", name=run,
                      legendgroup=run, showlegend=show, line=dict(color=colour, width=1.5, dash=dash),
                      marker=dict(size=5),
                      hovertemplate=f"{html.escape(run)}<br>epoch %{{x:.2f}}<br>{what} %{{y:{fmt}}}<extra></extra>")


def training_figure(curves: Mapping[str, Mapping[str, Series]], missing: Sequence[str] = (),
                    dense: Sequence[str] = ()) -> go.Figure:
    """Loss and kNN top-1 per epoch (top row); MAC ratio kept by the gates and forward MACs per
    step of the gated runs (bottom row). One colour per run; ``dense`` runs (ungated) are dashed
    and have no bottom-row lines. Clicking a run in the legend toggles all of its lines."""
    gated = [r for r in curves if r not in dense and curves[r].get("gate_ratio", ([], []))[0]]
    titles = ["SSL training loss", "kNN top-1 (monitor)",
              "MACs kept by the gates (effective / dense, per step)", "forward MACs per training step"]
    fig = make_subplots(rows=2, cols=2, horizontal_spacing=0.09, vertical_spacing=0.16, subplot_titles=titles)
    knn_values: list[float] = []
    for i, (run, c) in enumerate(curves.items()):
        colour = RUN_PALETTE[i % len(RUN_PALETTE)]
        is_dense = run in dense
        name = f"{run}: {DENSE_LABEL}" if is_dense else run
        dash = "dash" if is_dense else "solid"
        fig.add_trace(_line(c, "loss", name, colour, True, "loss", ".4f", dash), row=1, col=1)
        fig.add_trace(_line(c, "knn", name, colour, False, "kNN top-1", ".4f", dash, markers=True), row=1, col=2)
        knn_values += c["knn"][1]
        if run not in gated:
            continue
        fig.add_trace(_line(c, "gate_ratio", name, colour, False, "MAC ratio", ".3f"), row=2, col=1)
        if c["gate_target"][0]:
            fig.add_trace(_line(c, "gate_target", name, colour, False, "target", ".3f", "dot"), row=2, col=1)
        if c["macs_ideal"][0]:
            fig.add_trace(_line(c, "macs_ideal", name, colour, False, "ideal MACs", ".3s"), row=2, col=2)
        if c["macs_performed"][0]:
            fig.add_trace(_line(c, "macs_performed", name, colour, False, "performed MACs", ".3s", "dot"),
                          row=2, col=2)
    for row, col in ((1, 1), (1, 2), (2, 1), (2, 2)):
        fig.update_xaxes(title_text="epoch", row=row, col=col)
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="top-1", range=fitted_range(knn_values), row=1, col=2)
    fig.update_yaxes(title_text="MAC ratio (dotted: target)", range=[0, 1.05], row=2, col=1)
    fig.update_yaxes(title_text="MACs / step (solid: ideal, dotted: performed)", exponentformat="SI",
                     rangemode="tozero", row=2, col=2)
    if not gated:
        for ref in ("x3 domain", "x4 domain"):
            fig.add_annotation(text="no gated run logged gate_ratio / train_macs", xref=ref, yref="y3 domain"
                               if ref == "x3 domain" else "y4 domain", x=0.5, y=0.5, showarrow=False)
    title = f"Training curves of {len(curves)} runs ({len(gated)} gated)"
    if missing:
        title += f" ({len(missing)} runs without metrics.jsonl left out)"
    fig.update_layout(template=TEMPLATE, height=820, title=title, legend=dict(font=dict(size=10)),
                      margin=dict(t=110))
    return fig
