"""analysis.figure_style and what it changes in the dashboard's figures: SI-prefixed energy, a
palette grouped by component family, ungated runs named as such, fitted accuracy axes, wrapped
subplot titles and the gated runs' training curves (gate MAC ratio and MACs per step)."""
from __future__ import annotations

import colorsys
import itertools

import pytest

from analysis import dashboard, figure_style as S, figures, training_figures as T

from tests.analysis.test_dashboard import make_sweep

# every energy component the shipped accelerator models report (points.csv of a sweep over accel_configs/)
COMPONENTS = ["mac", "dram", "static", "smem", "l2", "rf", "sram_ifmap", "sram_filter", "sram_ofmap", "sram_fill",
              "sram_drain", "index", "gate", "dram_ifmap", "dram_filter", "dram_ofmap"]
FAMILY_OF = {"mac": "compute", "rf": "compute", "gate": "gating", "index": "gating", "static": "static",
             **{c: "onchip" for c in ("smem", "l2", "sram_ifmap", "sram_filter", "sram_ofmap", "sram_fill",
                                      "sram_drain")},
             **{c: "dram" for c in ("dram", "dram_ifmap", "dram_filter", "dram_ofmap")}}


@pytest.fixture(scope="module")
def dash(tmp_path_factory):
    return dashboard.build(make_sweep(tmp_path_factory.mktemp("style")), warn=lambda m: None)


def test_si_units():
    assert S.si(1.05486e9 * S.PJ, "J") == "1.05 mJ"
    assert S.si_pj(350.0) == "350 pJ" and S.si_pj(2.5e4) == "25 nJ" and S.si_pj(7e6) == "7 µJ"
    assert S.si(0.0, "J") == "0 J" and S.si(float("nan"), "J") == "n/a"


def test_energy_axes_are_si_joules(dash):
    layers, pareto = dash.figures["layers"], dash.figures["pareto"]
    for axis in (layers.layout.yaxis2, pareto.layout.xaxis2):
        assert axis.exponentformat == "SI" and axis.ticksuffix == "J" and "(J)" in axis.title.text
    stacks = [t for t in layers.data if str(t.name).startswith("energy: ")]
    assert stacks and max(max(t.y) for t in stacks) < 1e-6  # tens of pJ, drawn in joules
    assert all("pJ" not in t.hovertemplate and "%{y:.3s}J" in t.hovertemplate for t in stacks)
    assert "min energy" in dash.html and "100 pJ" in dash.html  # summary table: SI-prefixed too


def test_component_families_have_distinct_hues():
    assert {c: S.component_family(c) for c in COMPONENTS} == FAMILY_OF
    assert S.component_family("energy_sram_ifmap_pj") == "onchip"
    colours = S.component_colours(COMPONENTS)
    assert len(set(colours.values())) == len(COMPONENTS)  # no two components share a colour
    assert len(set(colours.values())) <= sum(len(shades) for _, shades in S.FAMILIES.values())
    hsv = {c: colorsys.rgb_to_hsv(*(int(colours[c][i:i + 2], 16) / 255 for i in (1, 3, 5))) for c in COMPONENTS}
    assert all(hsv[c][1] < 0.05 for c in COMPONENTS if FAMILY_OF[c] == "static")  # static: grey
    chromatic = [c for c in COMPONENTS if FAMILY_OF[c] != "static"]
    for a, b in itertools.combinations(chromatic, 2):
        gap = abs(hsv[a][0] - hsv[b][0])
        gap = min(gap, 1 - gap)
        if FAMILY_OF[a] == FAMILY_OF[b]:
            assert gap < 0.1, (a, b)       # shades of one hue
        else:
            assert gap > 0.1, (a, b)       # different families: different hues
    assert [S.component_family(c) for c in S.by_family(COMPONENTS)] == sorted(
        (FAMILY_OF[c] for c in COMPONENTS), key=list(S.FAMILIES).index)


def test_layer_stack_uses_family_colours_and_legend_groups(dash):
    stacks = {t.name[len("energy: "):]: t for t in dash.figures["layers"].data if str(t.name).startswith("energy: ")}
    for comp, trace in stacks.items():
        family = S.component_family(comp)
        assert trace.marker.color in S.FAMILIES[family][1]
        assert trace.legendgroup == f"energy: {family}" and S.FAMILIES[family][0] in trace.legendgrouptitle.text


def test_ungated_points_are_labelled_dense(dash, tmp_path):
    dense = {"run": "dense_s0", "gate_method": "none", "gate_S": None, "gate_b": None, "accel": "sys"}
    assert S.gate_label(dense) == "dense (ungated)" and S.gate_label({"gate_method": "cdg", "gate_S": 8,
                                                                       "gate_b": 1}) == "S=8, b=1"
    assert "dense (ungated)" in figures.hover_text(dense, "linear_top1")
    assert "S=n/a" not in figures.hover_text(dense, "linear_top1")
    fig = figures.layer_bars_figure([dense], {}, "linear_top1")
    assert "dense (ungated)" in fig.layout.annotations[0].text and "S=n/a" not in fig.layout.annotations[0].text
    names = [t.name for t in dash.figures["training"].data if t.showlegend]
    assert "dense_s0: dense (ungated)" in names


def test_accuracy_axes_fit_the_data(dash):
    accs = [0.945, 0.80, 0.95]  # RUNS of make_sweep
    for axis in (dash.figures["pareto"].layout.yaxis, dash.figures["pareto"].layout.yaxis2):
        lo, hi = axis.range
        assert lo < min(accs) and hi > max(accs)
        pad = (max(accs) - min(accs)) * 0.08
        assert lo == pytest.approx(min(accs) - pad) and hi == pytest.approx(max(accs) + pad)
    assert S.fitted_range([0.9, 0.9]) == pytest.approx([0.895, 0.905]) and S.fitted_range([]) is None


def test_subplot_titles_wrap_and_fit():
    long = "tpu_128x128_ws: cdg_digits_a_s0, S=8, b=1, linear_top1=0.962: cycles per layer"
    wrapped = S.wrap_title(long)
    assert wrapped.replace("<br>", " ") == long and all(len(line) <= 48 for line in wrapped.split("<br>"))
    point = {"run": "cdg_digits_a_s0", "gate_method": "cdg", "gate_S": 8, "gate_b": 1, "accel": "tpu_128x128_ws",
             "linear_top1": 0.962, "point_id": "p"}
    fig = figures.layer_bars_figure([point, dict(point, point_id="q")], {}, "linear_top1")
    for ann in fig.layout.annotations:
        assert all(len(line) <= 48 for line in ann.text.split("<br>")), ann.text
        assert 0.0 <= ann.y <= 1.0
    assert fig.layout.margin.t >= 120  # room for the title above the two-line subplot titles


def test_training_figure_has_gate_ratio_and_macs_for_gated_runs():
    events = [{"event": "train", "epoch": e / 2, "loss": 6 - e / 10, "gate_ratio": 1 - e / 10, "gate_target": 1 - e / 12,
               "train_macs_ideal": 100 - e, "train_macs_performed": 120.0} for e in range(1, 5)]
    events.append({"event": "knn", "epoch": 2, "top1": 0.7})
    dense = [{"event": "train", "epoch": e / 2, "loss": 6 - e / 9, "train_macs_ideal": 120.0,
              "train_macs_performed": 120.0} for e in range(1, 5)]
    fig = T.training_figure({"g": T.curves_of(events), "d": T.curves_of(dense)}, dense=["d"])
    by_axis = {}
    for t in fig.data:
        by_axis.setdefault(t.yaxis, []).append(t)
    ratio, target = by_axis["y3"]
    assert list(ratio.y) == [0.9, 0.8, 0.7, 0.6] and list(target.x) == [0.5, 1.0, 1.5, 2.0]
    assert target.line.dash == "dot"
    ideal, performed = by_axis["y4"]
    assert list(ideal.y) == [99, 98, 97, 96] and list(performed.y) == [120.0] * 4
    assert {t.name for t in by_axis["y3"] + by_axis["y4"]} == {"g"}  # nothing for the dense run
    assert [t.line.dash for t in by_axis["y"]] == ["solid", "dash"]
    assert "(1 gated)" in fig.layout.title.text
    assert fig.layout.yaxis2.range[0] < 0.7 < fig.layout.yaxis2.range[1] < 1.0  # kNN axis fitted
