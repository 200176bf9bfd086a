"""The validation figure: predicted against measured speed-up, per gated layer and per network,
with y = x (``python -m analysis.validate`` writes it; the dashboard shows it when the sweep
directory holds a ``validation.json``)."""
from __future__ import annotations

import html
import math
from typing import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def validation_figure(rows: Sequence[Mapping], summary: Mapping) -> go.Figure:
    """``rows``: ``analysis.validation.Row.as_dict()`` records; ``summary``: its ``summary()``."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08, subplot_titles=[
        _title("per gated layer", summary.get("gated_layers", {})), _title("per network", summary.get("networks", {}))])
    panels = ([r for r in rows if r["layer"] != "(network)" and r["gated"]], [r for r in rows if r["layer"] == "(network)"])
    for col, chosen in enumerate(panels, start=1):
        by_path: dict[str, list[Mapping]] = {}
        for r in chosen:
            by_path.setdefault(r["path_measured"] or "network", []).append(r)
        values = [1.0]
        for path, group in sorted(by_path.items()):
            x = [r["measured_speedup"] for r in group]
            y = [r["predicted_speedup"] for r in group]
            values += x + y
            text = [f"{html.escape(str(r['run']))} / {html.escape(str(r['layer']))}<br>density {_num(r['density'])}, "
                    f"predicted path {html.escape(str(r['path_predicted']))}" for r in group]
            fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name=path, legendgroup=path, showlegend=col == 1 or path == "network",
                                     text=text, marker=dict(size=8, opacity=0.75),
                                     hovertemplate="%{text}<br>measured %{x:.3g}x, predicted %{y:.3g}x<extra></extra>"),
                          row=1, col=col)
        finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        lo, hi = min(finite) * 0.9, max(finite) * 1.1
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", legendgroup="ideal",
                                 showlegend=col == 1, line=dict(color="grey", dash="dash"), hoverinfo="skip"),
                      row=1, col=col)
        fig.update_xaxes(title_text="measured speed-up (dense / sparse, median)", row=1, col=col)
        fig.update_yaxes(title_text="predicted speed-up (cpu model)", row=1, col=col)
    fig.update_layout(template="plotly_white", height=520,
                      title="Sparse executor on the CPU: predicted vs measured speed-up")
    return fig


def _num(value, fmt: str = ".2f") -> str:
    """A number as text; '-' for a missing one (NaN is null in validation.json)."""
    return format(value, fmt) if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _title(what: str, agreement: Mapping) -> str:
    return (f"{what}: n = {agreement.get('n', 0)}, MAPE {_num(agreement.get('mape_pct'), '.1f')} %, "
            f"Spearman {_num(agreement.get('spearman'))}")
