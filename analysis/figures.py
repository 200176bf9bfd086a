"""Plotly figures of a sweep (``analysis.dashboard`` puts them into one HTML page).

Every builder takes typed records (``analysis.results``: ``list[dict]`` of ``points.csv`` /
``layers.csv`` rows) and returns a ``plotly.graph_objects.Figure``; nothing here reads files
except :func:`read_metrics` (a run's ``metrics.jsonl``). Colours, units and axis helpers are
in ``analysis.figure_style`` (one accelerator looks the same in every figure; energy in SI-prefixed
joules); the training curves in ``analysis.training_figures``.
"""
from __future__ import annotations

import html
import math
from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.figure_style import (DENSE_LABEL, PJ, TEMPLATE, accel_colours, by_family, component_colours, component_family,
                                   energy_axis, esc as _esc, fitted_range, fmt as _fmt, gate_label, log_axis,
                                   num, si_pj, wrap_title, FAMILIES)
from analysis.pareto import RTOL, pareto_mask

DESIGN_COLUMNS = ("gate_S", "gate_b", "gate_G", "target_reduction")
OUTCOME_COLUMNS = ("speedup", "flops_reduction", "time_us", "energy_pj", "energy_saving", "utilisation")
ENERGY_PREFIX, ENERGY_SUFFIX = "energy_", "_pj"


def param_columns(points: Sequence[Mapping]) -> list[str]:
    cols: dict[str, None] = {}
    for p in points:
        for k in p:
            if k.startswith("param."):
                cols[k] = None
    return list(cols)


def hover_text(p: Mapping, accuracy: str) -> str:
    """What a point's hover box says: run, method and gate structure, accelerator and grid params."""
    params = ", ".join(f"{k[len('param.'):]}={_fmt(v)}" for k, v in p.items() if k.startswith("param."))
    lines = [
        f"<b>{_esc(p.get('run'))}</b> ({_esc(p.get('ssl_method'))})",
        (f"gate {_esc(p.get('gate_method'))}: S={_esc(p.get('gate_S'))} b={_esc(p.get('gate_b'))} "
         f"G={_esc(p.get('gate_G'))} target={_esc(p.get('target_reduction'))}") if gate_label(p) != DENSE_LABEL
        else DENSE_LABEL,
        f"accel {_esc(p.get('accel'))} [{_esc(p.get('accel_model'))}] {_esc(p.get('accel_mode'))}",
    ]
    if params:
        lines.append("params: " + html.escape(params))
    lines.append(f"{html.escape(accuracy)} {_esc(num(p.get(accuracy)))} | time {_esc(num(p.get('time_us')))} us | "
                 f"energy {html.escape(si_pj(p.get('energy_pj')))}")
    lines.append(f"speed-up {_esc(num(p.get('speedup')))} | FLOPs reduction {_esc(num(p.get('flops_reduction')))}"
                 f" | point {_esc(p.get('point_id'))}")
    return "<br>".join(lines)


def by_accel(points: Sequence[Mapping]) -> dict[str, list[Mapping]]:
    groups: dict[str, list[Mapping]] = defaultdict(list)
    for p in points:
        groups[str(p.get("accel"))].append(p)
    return dict(groups)


def front_of(rows: Sequence[Mapping], accuracy: str, cost: str) -> list[Mapping]:
    """Non-dominated rows for (accuracy max, cost min), cheapest first."""
    values = np.array([[num(r.get(accuracy)), num(r.get(cost))] for r in rows], dtype=float).reshape(len(rows), 2)
    mask = pareto_mask(values, [True, False])
    return sorted((r for r, m in zip(rows, mask) if m), key=lambda r: num(r.get(cost)))


def pareto_figure(points: Sequence[Mapping], accuracy: str) -> go.Figure:
    """Accuracy vs latency and vs energy; every point, and each accelerator's 2-D front as a line."""
    costs = (("time_us", "latency per image (us)", 1.0), ("energy_pj", "energy per image", PJ))
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"{accuracy} vs {label}" for _, label, _ in costs],
                        horizontal_spacing=0.08)
    colours = accel_colours(points)
    for accel, rows in by_accel(points).items():
        colour = colours[accel]
        for col, (cost, _label, scale) in enumerate(costs, start=1):
            fig.add_trace(go.Scatter(
                x=[num(r.get(cost)) * scale for r in rows], y=[num(r.get(accuracy)) for r in rows], mode="markers",
                name=accel, legendgroup=accel, showlegend=col == 1,
                marker=dict(color=colour, size=7, opacity=0.55, line=dict(width=0)),
                text=[hover_text(r, accuracy) for r in rows], hovertemplate="%{text}<extra></extra>",
            ), row=1, col=col)
            front = front_of(rows, accuracy, cost)
            fig.add_trace(go.Scatter(
                x=[num(r.get(cost)) * scale for r in front], y=[num(r.get(accuracy)) for r in front], mode="lines+markers",
                name=f"{accel}: Pareto front", legendgroup=accel, showlegend=col == 1,
                line=dict(color=colour, width=2, shape="hv"),
                marker=dict(color=colour, size=12, symbol="diamond", line=dict(color="black", width=1)),
                text=[f"<b>Pareto front ({html.escape(cost)})</b><br>" + hover_text(r, accuracy) for r in front],
                hovertemplate="%{text}<extra></extra>",
            ), row=1, col=col)
        # (the front's step line goes from the cheapest point up to the most accurate one)
    for col, (cost, label, scale) in enumerate(costs, start=1):
        log = log_axis(num(p.get(cost)) for p in points)
        axis = energy_axis(label) if scale == PJ else dict(title_text=label)
        axis["title_text"] += " (log)" if log else ""
        fig.update_xaxes(type="log" if log else "linear", row=1, col=col, **axis)
        fig.update_yaxes(title_text=accuracy, range=fitted_range(num(p.get(accuracy)) for p in points), row=1, col=col)
    fig.update_layout(template=TEMPLATE, height=520, title="Accuracy vs cost: every point, and the non-dominated "
                      "front per accelerator (diamonds)", legend=dict(groupclick="togglegroup"))
    return fig


def _axis_values(values: list[Any]) -> dict[str, Any] | None:
    """Numeric values as they are; anything else as sorted categories (ticktext)."""
    nums = [num(v) for v in values]
    if all(math.isfinite(x) for x in nums):
        return {"values": nums}
    cats = sorted({_fmt(v) for v in values}, key=lambda s: (not math.isfinite(num(_maybe_number(s))),
                                                             num(_maybe_number(s)), s))
    if len(cats) > 60:
        return None
    index = {c: i for i, c in enumerate(cats)}
    return {"values": [index[_fmt(v)] for v in values], "tickvals": list(range(len(cats))), "ticktext": cats}


def _maybe_number(s: str) -> Any:
    try:
        return float(s)
    except ValueError:
        return None


def parcoords_figure(points: Sequence[Mapping], accuracy: str) -> go.Figure:
    """Parallel coordinates: accelerator, gate method and structure, grid params, then outcomes.

    Design axes with a single value are left out; a point missing an outcome is left out (named in
    the title) since a parallel-coordinates line cannot have a gap."""
    outcomes = [c for c in (accuracy, *OUTCOME_COLUMNS) if any(math.isfinite(num(p.get(c))) for p in points)]
    kept = [p for p in points if all(math.isfinite(num(p.get(c))) for c in outcomes)]
    dropped = len(points) - len(kept)
    dims = []
    design = ["accel", "gate_method", *DESIGN_COLUMNS, *param_columns(points)]
    for col in design:
        values = [p.get(col) for p in kept]
        if len({_fmt(v) for v in values}) < 2:
            continue
        axis = _axis_values(values)
        if axis is not None:
            dims.append(dict(label=col.replace("param.", ""), **axis))
    for col in outcomes:
        dims.append(dict(label=col, values=[num(p.get(col)) for p in kept]))
    colour_col = outcomes[0] if outcomes else None
    colour = [num(p.get(colour_col)) for p in kept] if colour_col else [0.0] * len(kept)
    fig = go.Figure(go.Parcoords(
        dimensions=dims,
        line=dict(color=colour, colorscale="Viridis", showscale=True,
                  colorbar=dict(title=dict(text=colour_col or ""))),
        labelangle=-20, labelside="bottom",
    ))
    title = f"Design space: {len(kept)} points, coloured by {colour_col}; drag along an axis to filter"
    if dropped:
        title += f" ({dropped} points without {', '.join(outcomes)} left out)"
    fig.update_layout(template=TEMPLATE, height=520, title=title, margin=dict(l=150, r=80, t=90, b=110))
    return fig


def representative_points(points: Sequence[Mapping], accuracy: str, tolerance: float = 0.01) -> list[Mapping]:
    """Per accelerator: the fastest point whose accuracy is within ``tolerance`` of the accelerator's
    best (on its accuracy/latency front); the fastest point if no point has an accuracy."""
    out = []
    for _accel, rows in by_accel(points).items():
        timed = [r for r in rows if math.isfinite(num(r.get("time_us")))] or rows
        accs = [num(r.get(accuracy)) for r in timed if math.isfinite(num(r.get(accuracy)))]
        if accs:
            best = max(accs)
            timed = [r for r in timed if num(r.get(accuracy)) >= best - tolerance - RTOL * abs(best)]
        out.append(min(timed, key=lambda r: (num(r.get("time_us")), -num(r.get(accuracy)))))
    return out


def is_energy_component(column: str) -> bool:
    """``energy_<component>_pj`` with a non-empty component (so not the total ``energy_pj``)."""
    return (column.startswith(ENERGY_PREFIX) and column.endswith(ENERGY_SUFFIX)
            and len(column) > len(ENERGY_PREFIX) + len(ENERGY_SUFFIX))


def energy_components(rows: Sequence[Mapping]) -> list[str]:
    """The ``energy_<component>_pj`` columns with a non-zero value in some row (an all-zero or absent
    component adds nothing to a stack). The total ``energy_pj`` matches the pattern with an empty
    component and is not one: stacking it too drew every bar at twice its energy."""
    cols: dict[str, None] = {}
    for r in rows:
        for k in r:
            if is_energy_component(k):
                cols[k] = None
    return [c for c in cols if any(math.isfinite(num(r.get(c))) and num(r.get(c)) != 0.0 for r in rows)]


def ordered_layers(rows: Sequence[Mapping]) -> list[Mapping]:
    if all(isinstance(r.get("layer_index"), (int, float)) and not isinstance(r.get("layer_index"), bool)
           for r in rows):
        return sorted(rows, key=lambda r: r["layer_index"])
    return list(rows)


def layer_bars_figure(chosen: Sequence[Mapping], layers_by_point: Mapping[Any, list[Mapping]],
                      accuracy: str) -> go.Figure:
    """Per layer, for each chosen point (one row each): cycles (compute + memory-bound remainder,
    with the dense total as a marker) and energy by component, stacked."""
    n = max(1, len(chosen))
    titles = []
    for p in chosen:
        label = f"{p.get('accel')}: {p.get('run')}, {gate_label(p)}, {accuracy}={_fmt(num(p.get(accuracy)))}"
        titles += [wrap_title(f"{label}: cycles per layer"), wrap_title(f"{p.get('accel')}: energy per layer by "
                                                                        "component")]
    fig = make_subplots(rows=n, cols=2, subplot_titles=titles or None, horizontal_spacing=0.09,
                        vertical_spacing=min(0.12, 0.6 / n))
    fig.update_annotations(font_size=12)
    components = by_family(energy_components([r for p in chosen for r in layers_by_point.get(p.get("point_id"), [])]))
    comp_colour = component_colours(components)
    for i, p in enumerate(chosen, start=1):
        rows = ordered_layers(layers_by_point.get(p.get("point_id"), []))
        names = [str(r.get("layer")) for r in rows]
        compute = [num(r.get("cycles")) for r in rows]
        total = [num(r.get("total_cycles")) for r in rows]
        memory = [max(0.0, t - c) if math.isfinite(t) and math.isfinite(c) else math.nan
                  for t, c in zip(total, compute)]
        first = i == 1
        fig.add_trace(go.Bar(x=names, y=compute, name="compute cycles", legendgroup="compute",
                             showlegend=first, marker_color="#4C78A8",
                             hovertemplate="%{x}<br>compute %{y:.4g} cycles<extra></extra>"), row=i, col=1)
        fig.add_trace(go.Bar(x=names, y=memory, name="memory-bound cycles (total - compute)", legendgroup="memory",
                             showlegend=first, marker_color="#F58518",
                             hovertemplate="%{x}<br>memory-bound %{y:.4g} cycles<extra></extra>"), row=i, col=1)
        if any("dense_total_cycles" in r for r in rows):
            fig.add_trace(go.Scatter(x=names, y=[num(r.get("dense_total_cycles")) for r in rows], mode="markers",
                                     name="dense total cycles", legendgroup="dense", showlegend=first,
                                     marker=dict(symbol="line-ew-open", size=14, color="black", line=dict(width=2)),
                                     hovertemplate="%{x}<br>dense total %{y:.4g} cycles<extra></extra>"), row=i, col=1)
        for comp in components:
            label = comp[len(ENERGY_PREFIX):-len(ENERGY_SUFFIX)]
            family = component_family(label)
            fig.add_trace(go.Bar(x=names, y=[num(r.get(comp)) * PJ for r in rows], name=f"energy: {label}",
                                 legendgroup=f"energy: {family}", showlegend=first, marker_color=comp_colour[comp],
                                 legendgrouptitle_text=f"energy: {FAMILIES[family][0]}",
                                 hovertemplate=f"%{{x}}<br>{html.escape(label)} %{{y:.3s}}J<extra></extra>"),
                          row=i, col=2)
        fig.update_yaxes(title_text="cycles / image", row=i, col=1)
        fig.update_yaxes(row=i, col=2, **energy_axis("energy / image"))
        fig.update_xaxes(tickangle=-60, tickfont=dict(size=9), row=i, col=1)
        fig.update_xaxes(tickangle=-60, tickfont=dict(size=9), row=i, col=2)
    fig.update_layout(template=TEMPLATE, barmode="stack", height=200 + 400 * n, margin=dict(t=130),
                      legend=dict(groupclick="toggleitem"),
                      title="Per-layer cycles and energy of a representative point per accelerator "
                            "(fastest point within 0.01 of the accelerator's best accuracy, or --point)")
    return fig


def gate_density_figure(points: Sequence[Mapping], layers_by_point: Mapping[Any, list[Mapping]]) -> go.Figure:
    """Heat maps of the gate density (fraction of gates open, evaluation-set mean) per run: per gated
    layer and per stage (weighted by dense MACs where known). The density is a property of the run's
    trace, so one point per run is read."""
    per_run: dict[str, list[Mapping]] = {}
    order: dict[str, tuple] = {}
    for p in points:
        run = str(p.get("run"))
        rows = layers_by_point.get(p.get("point_id"))
        if run in per_run or not rows:
            continue
        gated = [r for r in ordered_layers(rows) if math.isfinite(num(r.get("gate_density")))]
        if gated:
            per_run[run] = gated
            order[run] = (str(p.get("gate_method")), run)
    runs = sorted(per_run, key=lambda r: order[r])
    layer_names: dict[str, None] = {}
    stage_names: dict[str, None] = {}
    for run in runs:
        for r in per_run[run]:
            layer_names[str(r.get("layer"))] = None
            stage_names[str(r.get("stage"))] = None
    layer_list, stage_list = list(layer_names), list(stage_names)
    z_layer = [[math.nan] * len(layer_list) for _ in runs]
    z_stage = [[math.nan] * len(stage_list) for _ in runs]
    for i, run in enumerate(runs):
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for r in per_run[run]:
            d = num(r.get("gate_density"))
            z_layer[i][layer_list.index(str(r.get("layer")))] = d
            w = num(r.get("dense_macs"))
            w = w if math.isfinite(w) and w > 0 else 1.0
            acc = sums[str(r.get("stage"))]
            acc[0] += w * d
            acc[1] += w
        for stage, (wd, w) in sums.items():
            z_stage[i][stage_list.index(stage)] = wd / w
    fig = make_subplots(rows=1, cols=2, column_widths=[0.78, 0.22], horizontal_spacing=0.04,
                        subplot_titles=["per gated layer", "per stage (MAC-weighted)"], shared_yaxes=True)
    common = dict(zmin=0.0, zmax=1.0, colorscale="Viridis", y=runs, xgap=1, ygap=1)
    fig.add_trace(go.Heatmap(z=z_layer, x=layer_list, colorbar=dict(title=dict(text="gate density")),
                             hovertemplate="run %{y}<br>layer %{x}<br>gate density %{z:.3f}<extra></extra>",
                             **common), row=1, col=1)
    fig.add_trace(go.Heatmap(z=z_stage, x=stage_list, showscale=False,
                             hovertemplate="run %{y}<br>stage %{x}<br>gate density %{z:.3f}<extra></extra>",
                             **common), row=1, col=2)
    fig.update_xaxes(tickangle=-60, tickfont=dict(size=9), row=1, col=1)
    fig.update_yaxes(tickfont=dict(size=9), autorange="reversed", row=1, col=1)
    title = "Gate density (fraction of gates open) per run"
    if not runs:
        title += ": no gated layers in this sweep"
    fig.update_layout(template=TEMPLATE, height=max(360, 160 + 18 * len(runs)), title=title)
    return fig


def speedup_figure(points: Sequence[Mapping], layers_by_point: Mapping[Any, list[Mapping]],
                   accuracy: str = "linear_top1") -> go.Figure:
    """Realised speed-up against the FLOPs reduction, per point and per gated layer, coloured by
    accelerator, with the ideal y = x."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=["per point (whole network)", "per gated layer"])
    colours = accel_colours(points)
    top = [1.0, 1.0]
    values: list[list[float]] = [[], []]
    for accel, rows in by_accel(points).items():
        x = [num(r.get("flops_reduction")) for r in rows]
        y = [num(r.get("speedup")) for r in rows]
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name=accel, legendgroup=accel,
                                 marker=dict(color=colours[accel], size=7, opacity=0.7),
                                 text=[hover_text(r, accuracy) for r in rows],
                                 hovertemplate="%{text}<extra></extra>"), row=1, col=1)
        lx, ly, lt = [], [], []
        for r in rows:
            for layer in layers_by_point.get(r.get("point_id"), []):
                if layer.get("gated") is False or not math.isfinite(num(layer.get("gate_density"))):
                    continue
                lx.append(num(layer.get("flops_reduction")))
                ly.append(num(layer.get("speedup")))
                lt.append(f"{html.escape(str(r.get('run')))} / {html.escape(str(layer.get('layer')))}<br>"
                          f"granularity {_esc(layer.get('granularity'))}")
        scatter = go.Scattergl if len(lx) > 5000 else go.Scatter
        fig.add_trace(scatter(x=lx, y=ly, mode="markers", name=f"{accel} (layers)", legendgroup=accel,
                              showlegend=False, marker=dict(color=colours[accel], size=5, opacity=0.45),
                              text=lt, hovertemplate="%{text}<br>FLOPs reduction %{x:.3g}, speed-up %{y:.3g}"
                                                     "<extra>" + html.escape(accel) + "</extra>"), row=1, col=2)
        top[0] = max([top[0]] + [v for v in x + y if math.isfinite(v)])
        top[1] = max([top[1]] + [v for v in lx + ly if math.isfinite(v)])
        values[0] += x + y
        values[1] += lx + ly
    for col in (1, 2):
        # a layer with nearly every gate closed can reach a 1000x FLOPs reduction: log axes then
        log = log_axis(values[col - 1] + [1.0])
        fig.add_trace(go.Scatter(x=[1.0, top[col - 1]], y=[1.0, top[col - 1]], mode="lines",
                                 name="ideal: speed-up = FLOPs reduction", legendgroup="ideal", showlegend=col == 1,
                                 line=dict(color="grey", dash="dash"), hoverinfo="skip"), row=1, col=col)
        fig.update_xaxes(title_text="FLOPs reduction (dense MACs / needed MACs)" + (" (log)" if log else ""),
                         type="log" if log else "linear", row=1, col=col)
        fig.update_yaxes(title_text="realised speed-up (dense cycles / cycles)" + (" (log)" if log else ""),
                         type="log" if log else "linear", row=1, col=col)
    fig.update_layout(template=TEMPLATE, height=520, title="FLOPs reduction vs realised speed-up per accelerator",
                      legend=dict(groupclick="togglegroup"))
    return fig
