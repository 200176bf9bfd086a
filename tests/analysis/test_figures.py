"""analysis.figures on a real tiny sweep of every shipped accelerator config: the per-layer energy
stack must add up to the layer's total energy (it once stacked the total as a component too)."""
from __future__ import annotations

from pathlib import Path

import pytest

from analysis import dse, figures
from analysis.results import load_sweep
from hwsim.models import registry

from tests.analysis.test_dse import make_run

ROOT = Path(__file__).resolve().parents[2]
ACCEL_CONFIGS = sorted(str(p) for p in (ROOT / "accel_configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def every_accel_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("figs")
    make_run(tmp / "runs", "cdg_s0", S=2, density=0.4)
    dse.run_sweep([str(tmp / "runs")], ACCEL_CONFIGS, tmp / "sweep", workers=1, progress=False)
    points, layers, _meta = load_sweep(tmp / "sweep")
    by_point: dict = {}
    for row in layers:
        by_point.setdefault(row["point_id"], []).append(row)
    return points, by_point


def test_the_total_is_not_a_component():
    assert not figures.is_energy_component("energy_pj")
    assert figures.is_energy_component("energy_mac_pj")
    assert not figures.is_energy_component("dense_energy_pj") and not figures.is_energy_component("energy_saving")
    rows = [{"energy_pj": 3.0, "energy_mac_pj": 2.0, "energy_dram_pj": 1.0, "energy_index_pj": 0.0}]
    assert figures.energy_components(rows) == ["energy_mac_pj", "energy_dram_pj"]


def test_every_shipped_config_and_model_is_in_the_sweep(every_accel_sweep):
    points, _ = every_accel_sweep
    assert len(ACCEL_CONFIGS) >= 7
    assert sorted(p["accel_file"] for p in points) == ACCEL_CONFIGS
    assert set(registry.names()) <= {p["accel_model"] for p in points}


@pytest.mark.parametrize("config", ACCEL_CONFIGS, ids=lambda c: Path(c).stem)
def test_energy_stack_sums_to_the_layer_total(every_accel_sweep, config):
    points, by_point = every_accel_sweep
    point = next(p for p in points if p["accel_file"] == config)
    fig = figures.layer_bars_figure([point], by_point, "linear_top1")
    stacks = [t for t in fig.data if str(t.name).startswith("energy: ")]
    assert stacks and "energy: " not in {t.name for t in stacks}  # no unnamed (total) component
    rows = figures.ordered_layers(by_point[point["point_id"]])
    for i, row in enumerate(rows):
        stacked = sum(t.y[i] for t in stacks)
        assert stacked == pytest.approx(row["energy_pj"] * 1e-12, rel=1e-9), row["layer"]  # drawn in joules
    assert sum(sum(t.y) for t in stacks) == pytest.approx(point["energy_pj"] * 1e-12, rel=1e-9)
