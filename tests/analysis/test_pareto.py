"""analysis.pareto: the float tolerance of fronts, savings and shares, and the experiment key that
keeps different experiments from being averaged as seeds."""
from __future__ import annotations

import math

import pytest
import yaml

from analysis import pareto, runs
from analysis.experiment import experiment_key, gate_recipe

from tests.analysis.test_dse import make_run

OBJ = {"acc": "max", "t": "min", "e": "min"}


def test_a_run_faster_by_float_noise_is_not_on_the_front():
    dense = {"id": "dense", "acc": 0.95, "t": 100.0, "e": 50.0}
    noise = {"id": "noise", "acc": 0.94, "t": 100.0 - 1e-13, "e": 50.0 - 1e-14}
    real = {"id": "real", "acc": 0.93, "t": 99.0, "e": 50.0}
    assert {p["id"] for p in pareto.pareto_front([dense, noise, real], OBJ)} == {"dense", "real"}
    # the exact comparison the tolerance replaces keeps the noise run
    v = [[p["acc"], p["t"], p["e"]] for p in (dense, noise, real)]
    assert pareto.pareto_mask(v, [True, False, False], rtol=0.0).tolist() == [True, True, True]
    # equal within the tolerance: neither dominates the other, both stay
    twin = {"id": "twin", "acc": 0.95 * (1 + 1e-12), "t": 100.0, "e": 50.0}
    assert {p["id"] for p in pareto.pareto_front([dense, twin], OBJ)} == {"dense", "twin"}


def test_a_dominator_that_sorts_after_what_it_dominates():
    # y is as accurate as x within the tolerance and faster: y dominates x, though x sorts first
    x = [0.9, 10.0]
    y = [0.9 - 1e-12, 5.0]
    assert pareto.pareto_mask([x, y], [True, False]).tolist() == [False, True]
    assert pareto.pareto_mask([y, x], [True, False]).tolist() == [True, False]


def test_savings_and_shares_of_float_noise_are_zero_or_none():
    assert pareto.snap(-6.661e-16) == 0.0 and pareto.snap(0.25) == 0.25 and pareto.snap(-1e-3) == -1e-3
    assert math.isnan(pareto.snap(math.nan))
    table = pareto.format_table([{"run": "dense", "energy_saving": -6.661338147750939e-16, "time_us": 1e-16}],
                                ["run", "energy_saving", "time_us"], "t")
    assert "e-16" in table.splitlines()[-1].split()[2] and table.splitlines()[-1].split()[1] == "0"
    # a dense layer whose needed MACs differ from its dense MACs by rounding only promises no saving
    dense_macs, needed = 0.1 + 0.2, 0.3
    assert needed / dense_macs < 1.0
    layer = {"point_id": "p", "layer": "l", "dense_total_cycles": 1000.0, "dense_cycles": 800.0,
             "total_cycles": 1000.0, "cycles": 800.0, "dense_macs": dense_macs, "needed_macs": needed}
    row = pareto.reduction_breakdown([{"point_id": "p", "design": "d", "gate_method": "none"}], [layer])[0]
    assert math.isnan(row["realised_share"])
    assert all(math.isnan(row[f"lost_{x}_share"]) for x in pareto.LOSSES)
    assert all(row[f"lost_{x}_cycles"] == 0.0 for x in pareto.LOSSES)


def _pt(experiment, method, S, acc, t, seed):
    return {"design": "a", "experiment": experiment, "gate_method": method, "gate_S": S, "gate_b": 1,
            "seed": seed, "linear_top1": acc, "time_us": t}


def test_best_structure_never_averages_two_experiments():
    pts = [_pt("simclr40", "none", 1, 0.96, 100.0, 0), _pt("simclr40", "cdg", 8, 0.955, 50.0, 0),
           _pt("simclr40", "cdg", 8, 0.953, 52.0, 1),
           _pt("byol3", "none", 1, 0.50, 100.0, 0), _pt("simclr3", "none", 1, 0.60, 100.0, 0)]
    best = {b["experiment"]: b for b in pareto.best_gate_structure(pts, 0.01, structure=("gate_method", "gate_S"))}
    assert set(best) == {"simclr40", "byol3", "simclr3"}
    assert (best["simclr40"]["gate_method"], best["simclr40"]["n_seeds"]) == ("cdg", 2)
    assert best["simclr40"]["accuracy"] == pytest.approx(0.954) and best["simclr40"]["time_us"] == 51.0
    assert best["byol3"]["n_seeds"] == 1 and best["byol3"]["accuracy"] == 0.5
    assert best["simclr3"]["reference_accuracy"] == 0.6
    # without the experiment key the three dense runs were one "dense, 3 seeds" candidate
    mixed = pareto.best_gate_structure(pts, 0.01, structure=("gate_method", "gate_S"), experiment=())
    assert len(mixed) == 1 and mixed[0]["candidates"] == 2


def test_costs_equal_within_the_tolerance_prefer_the_more_accurate():
    pts = [_pt("e", "cdg", 8, 0.95, 50.0, 0), _pt("e", "cdg", 16, 0.96, 50.0 * (1 + 1e-13), 0),
           _pt("e", "none", 1, 0.96, 50.0 * (1 + 2e-13), 0)]
    b = pareto.best_gate_structure(pts, 0.02, structure=("gate_method", "gate_S"))[0]
    assert (b["gate_method"], b["gate_S"]) == ("none", 1) and b["gain_vs_dense"] == 1.0
    with pytest.raises(pareto.HwsimError, match="tolerance"):
        pareto.best_gate_structure(pts, math.inf)


def test_experiment_key_separates_method_data_and_budget_not_seeds(tmp_path):
    root = tmp_path / "runs"
    a, b = make_run(root, "a_s0", seed=0), make_run(root, "a_s1", seed=1)
    ia, ib = runs.read_run(a), runs.read_run(b)
    assert ia.experiment == ib.experiment and ia.seed != ib.seed
    assert ia.experiment.startswith("digits8/tinyx1.0/simclr/") and ia.gate_recipe is not None
    cfg = yaml.safe_load((a / "config.yaml").read_text())
    summary = {"epochs": 40, "steps": 200}
    base = experiment_key(cfg, summary)
    changes = [("method", "name", "byol"), ("data", "dataset", "cifar10"), ("train", "epochs", 3),
               ("optim", "lr", 0.5), ("model", "width", 0.5)]
    for section, key, value in changes:
        other = {**cfg, section: {**cfg.get(section, {}), key: value}}
        assert experiment_key(other, summary) != base, (section, key)
    assert experiment_key(cfg, {"epochs": 3, "steps": 15}) != base
    for section, key, value in [("train", "seed", 7), ("run", "name", "x"), ("data", "data_dir", "/d"),
                                ("gate", "channel_block", 64), ("train", "device", "cpu")]:
        other = {**cfg, section: {**cfg.get(section, {}), key: value}}
        assert experiment_key(other, summary) == base, (section, key)
    # the gate recipe: a warm-up change is a new candidate, a structure change is a structure column
    gate = cfg["gate"]
    assert gate_recipe({**cfg, "gate": {**gate, "warmup_epochs": 5}}) != gate_recipe(cfg)
    assert gate_recipe({**cfg, "gate": {**gate, "channel_block": 64}}) == gate_recipe(cfg)
    assert gate_recipe({**cfg, "gate": {"method": "none"}}) is None
