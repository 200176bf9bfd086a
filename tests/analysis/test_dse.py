"""analysis.dse (sweeps, resume, bad input) and analysis.pareto on tiny hand-made data."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from analysis import dse, pareto, worker
from analysis.results import load_sweep
from hwsim.api import simulate_trace
from hwsim.config import parse_config
from hwsim.trace.errors import HwsimError
from hwsim.trace import GateGrid, TraceWriter, load_trace, make_layer

from tests.hwsim.helpers import config_dict

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
META = {"producer": "test", "ssl_method": "simclr", "gate_method": "cdg", "dataset": "digits", "image_size": 8}
CONTRACT_POINT_COLUMNS = [
    "point_id", "run", "run_path", "backbone", "ssl_method", "gate_method", "gate_S", "gate_b", "gate_G",
    "target_reduction", "seed", "linear_top1", "knn_top1", "trained_reduction", "accel", "accel_file",
    "accel_model", "accel_mode", "mask_source", "total_cycles", "dense_total_cycles", "speedup",
    "flops_reduction", "zero_work_removed", "time_us", "energy_pj", "dense_energy_pj", "energy_saving",
    "dram_bytes", "utilisation", "energy_mac_pj", "energy_dram_filter_pj"]
CONTRACT_LAYER_COLUMNS = ["point_id", "layer", "stage", "gated", "granularity", "cycles", "total_cycles",
                          "dense_total_cycles", "speedup", "flops_reduction", "zero_work_removed",
                          "gate_density", "energy_pj", "energy_mac_pj"]


def _network(S: int):
    gate = GateGrid(G=2, S=S, b=2)
    stem = make_layer("conv1", "conv", (3, 8, 8), 8, 3, 1, 1)
    g1 = make_layer("layer1.0.conv1", "conv", (8, 8, 8), 8, 3, 1, 1, gate=gate, inputs=["conv1"])
    g2 = make_layer("layer2.0.conv1", "conv", (8, 8, 8), 16, 3, 2, 1, gate=gate, inputs=["layer1.0.conv1"])
    fc = make_layer("fc", "linear", (16, 1, 1), 10, inputs=["layer2.0.conv1"])
    return [stem, g1, g2, fc]


def make_run(root: Path, name: str, S: int = 2, seed: int = 0, density: float = 0.4, acc: float = 0.9,
             meta: dict | None = None, trace: bool = True) -> Path:
    run = root / name
    run.mkdir(parents=True)
    cfg = {"data": {"dataset": "digits", "image_size": 8}, "model": {"arch": "tiny", "stem": "cifar", "width": 1.0},
           "method": {"name": "simclr"},
           "gate": {"method": "cdg", "groups": 2, "channel_block": S, "spatial_block": 2, "target_reduction": 2.0},
           "train": {"seed": seed}, "run": {"name": name}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    summary = {"linear_top1": acc, "knn_top1": acc - 0.05, "target_reduction": 2.0}
    if trace:
        rng = np.random.default_rng(seed)
        with TraceWriter(run / "trace", meta=dict(META if meta is None else meta)) as tw:
            for spec in _network(S):
                gm = rng.random(spec.gate_grid(3)) < density if spec.gate is not None else None
                tw.add_layer(spec, gate_masks=gm)
        tr = load_trace(run / "trace")
        dense = sum(layer.spec.dense_macs for layer in tr.layers)
        eff = sum(layer.stats.effective_macs for layer in tr.layers)
        summary.update(dense_macs=dense, effective_macs=eff, reduction=dense / eff)
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def write_yaml(path: Path, obj) -> Path:
    path.write_text(yaml.safe_dump(obj) if obj is not None else "")
    return path


@pytest.fixture
def setup(tmp_path):
    runs = tmp_path / "runs" / "group"
    make_run(runs, "cdg_a_s0", S=2, seed=0, acc=0.90)
    make_run(runs, "cdg_b_s0", S=8, seed=0, density=0.6, acc=0.92)
    accel = write_yaml(tmp_path / "tiny.yaml", config_dict())
    grid = write_yaml(tmp_path / "grid.yaml", {"systolic": {"array.rows": [4, 8], "dataflow": ["os", "ws"]}})
    return tmp_path, runs, accel, grid


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_two_runs_one_accel_2x2_grid(setup):
    tmp, runs, accel, grid = setup
    out = tmp / "sweep"
    res = dse.run_sweep([str(runs)], [str(accel)], out, grid=str(grid), workers=1, progress=False)
    assert res.computed == 8 and res.reused == 0 and res.counts["done"] == 8
    points, layers, meta = load_sweep(out)
    header = list(_csv(out / "points.csv")[0])
    assert set(CONTRACT_POINT_COLUMNS) <= set(header)
    assert {"param.array.rows", "param.dataflow"} <= set(header)
    assert set(CONTRACT_LAYER_COLUMNS) <= set(_csv(out / "layers.csv")[0])
    assert len(points) == 8 and len(layers) == 8 * 4 and len({p["point_id"] for p in points}) == 8
    assert meta["counts"]["points"] == 8 and meta["status"] == "complete"
    assert {(p["run"], p["param.array.rows"], p["param.dataflow"]) for p in points} == {
        (r, rows, df) for r in ("cdg_a_s0", "cdg_b_s0") for rows in (4, 8) for df in ("os", "ws")}
    a = next(p for p in points if p["run"] == "cdg_b_s0")
    assert (a["gate_S"], a["gate_b"], a["gate_G"], a["seed"], a["linear_top1"]) == (8, 2, 2, 0, 0.92)
    assert a["accel_model"] == "systolic" and a["backbone"] == "tiny" and a["mask_source"] == "masks"
    # every point equals a direct simulation of that run with those parameters
    for p in points:
        cfg = parse_config(config_dict(array={"rows": p["param.array.rows"], "cols": 8},
                                       dataflow=p["param.dataflow"]), "t")
        ref = simulate_trace(Path(p["run_path"]) / "trace", cfg).totals()
        assert p["total_cycles"] == pytest.approx(ref["total_cycles"])
        assert p["energy_pj"] == pytest.approx(ref["energy_pj"])
    # the grid changes the answer, and layer rows carry stage and trace density
    assert len({p["total_cycles"] for p in points if p["run"] == "cdg_a_s0"}) > 1
    lay = {(l["layer"], l["stage"]) for l in layers}
    assert ("layer2.0.conv1", "layer2") in lay and ("conv1", "conv1") in lay
    g = next(l for l in layers if l["layer"] == "layer1.0.conv1")
    assert g["gated"] is True and 0 < g["gate_density"] < 1
    # the same command again computes nothing and keeps every point id
    again = dse.run_sweep([str(runs)], [str(accel)], out, grid=str(grid), workers=1, progress=False)
    assert again.computed == 0 and again.reused == 8
    assert [p["point_id"] for p in load_sweep(out)[0]] == [p["point_id"] for p in points]


def test_interrupted_sweep_resumes_without_recomputing_or_losing(setup, monkeypatch):
    tmp, runs, accel, grid = setup
    ref_out = tmp / "ref"
    dse.run_sweep([str(runs)], [str(accel)], ref_out, grid=str(grid), workers=1, progress=False)
    ref = {p["point_id"]: p for p in load_sweep(ref_out)[0]}

    out = tmp / "sweep"
    real = worker._simulate_point
    calls = []

    def dying(*args):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(worker, "_simulate_point", dying)
    with pytest.raises(KeyboardInterrupt):
        dse.run_sweep([str(runs)], [str(accel)], out, grid=str(grid), workers=1, progress=False, chunk=1)
    points, _, meta = load_sweep(out)          # CSVs were rebuilt from the journal on the way out
    assert len(points) == 5 and meta["status"] == "interrupted"
    # a kill in the middle of writing the 5th record: its line is cut
    journal = out / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    assert len(lines) == 5
    journal.write_bytes(b"".join(lines[:4]) + lines[4][: len(lines[4]) // 2])

    calls.clear()
    monkeypatch.setattr(worker, "_simulate_point", lambda *a: (calls.append(1), real(*a))[1])
    res = dse.run_sweep([str(runs)], [str(accel)], out, grid=str(grid), workers=1, progress=False)
    assert len(calls) == 4 and res.computed == 4 and res.reused == 4
    points, layers, meta = load_sweep(out)
    assert meta["counts"]["journal_lines_dropped"] == 1 and meta["status"] == "complete"
    assert {p["point_id"] for p in points} == set(ref) and len(layers) == 32
    for p in points:
        assert p["total_cycles"] == ref[p["point_id"]]["total_cycles"]
        assert p["energy_pj"] == ref[p["point_id"]]["energy_pj"]
    assert len(journal.read_bytes().splitlines()) == 8


def test_process_pool_gives_the_serial_results(setup):
    tmp, runs, accel, grid = setup
    dse.run_sweep([str(runs)], [str(accel)], tmp / "a", grid=str(grid), workers=1, progress=False)
    dse.run_sweep([str(runs)], [str(accel)], tmp / "b", grid=str(grid), workers=2, progress=False)
    a = {p["point_id"]: p["total_cycles"] for p in load_sweep(tmp / "a")[0]}
    b = {p["point_id"]: p["total_cycles"] for p in load_sweep(tmp / "b")[0]}
    assert a == b and len(a) == 8


def _err(fn, *needles):
    with pytest.raises(HwsimError) as info:
        fn()
    msg = info.value.one_line()
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_bad_inputs_name_the_problem(setup, monkeypatch):
    tmp, runs, accel, grid = setup
    out = tmp / "o"

    def sweep(r=(str(runs),), g=str(grid), **kw):
        return dse.run_sweep(list(r), [str(accel)], out, grid=g, workers=1, progress=False, **kw)

    # a run without a trace: an error naming it, or left out (and listed) with skip_untraced
    make_run(runs, "untraced", trace=False)
    _err(sweep, "untraced", "no trace", "--skip-untraced")
    res = sweep(skip_untraced=True)
    assert res.counts["points"] == 8
    assert any("untraced" in s for s in json.loads((out / "sweep.json").read_text())["skipped_untraced"])
    shutil.rmtree(runs / "untraced")
    # a trace that belongs to another run: meta disagrees with config.yaml
    other = make_run(tmp / "x", "moco_run", meta={**META, "ssl_method": "moco"})
    _err(lambda: sweep([str(other)]), "moco_run", "meta.ssl_method", "moco")
    # ... or its layer table disagrees with the run's summary MACs
    swapped = make_run(tmp / "x", "swapped", S=2, seed=3)
    s = json.loads((swapped / "summary.json").read_text())
    (swapped / "summary.json").write_text(json.dumps({**s, "effective_macs": s["effective_macs"] * 1.1}))
    _err(lambda: sweep([str(swapped)]), "swapped", "effective_macs")
    (swapped / "summary.json").write_text(json.dumps({**s, "dense_macs": s["dense_macs"] * 2}))
    _err(lambda: sweep([str(swapped)]), "swapped", "dense_macs")
    # grids: empty file, empty list, unknown key, unknown model section, invalid value
    _err(lambda: sweep(g=str(write_yaml(tmp / "g0.yaml", None))), "g0.yaml", "empty grid")
    _err(lambda: sweep(g=str(write_yaml(tmp / "g1.yaml", {"systolic": {"array.rows": []}}))), "array.rows", "empty")
    _err(lambda: sweep(g=str(write_yaml(tmp / "g2.yaml", {"array.depth": [1, 2]}))), "tiny.yaml", "array.depth")
    _err(lambda: sweep(g=str(write_yaml(tmp / "g3.yaml", {"tpu": {"array.rows": [1]}}))), "g3.yaml", "tpu")
    _err(lambda: sweep(g=str(write_yaml(tmp / "g4.yaml", {"dataflow": ["os", "diagonal"]}))), "tiny.yaml",
         "dataflow", "diagonal")
    # nothing matched
    _err(lambda: sweep([str(tmp / "nope*")]), "no runs matched")
    (tmp / "empty").mkdir()
    _err(lambda: sweep([str(tmp / "empty")]), "no runs matched")
    # --ray without ray installed
    monkeypatch.setitem(sys.modules, "ray", None)
    _err(lambda: sweep(ray=True), "pip install", "ray")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, env=ENV,
                          timeout=120)


def test_cli_sweep_then_pareto_table_and_one_line_errors(setup):
    tmp, runs, accel, grid = setup
    out = tmp / "cli"
    r = _cli("analysis.dse", "--runs", str(runs / "*"), "--accel", str(accel), "--grid", str(grid),
             "--out", str(out), "--workers", "1", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "8/8 points" in r.stdout
    r = _cli("analysis.pareto", "--sweep", str(out))
    assert r.returncode == 0, r.stderr
    assert "Pareto front" in r.stdout and "Best gate structure" in r.stdout and "lost_granularity_share" in r.stdout
    bad = write_yaml(tmp / "bad.yaml", {"systolic": {"array.depth": [1]}})
    r = _cli("analysis.dse", "--runs", str(runs), "--accel", str(accel), "--grid", str(bad), "--out", str(tmp / "o"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and "array.depth" in r.stderr
    r = _cli("analysis.pareto", "--sweep", str(tmp / "nothing"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nothing" in r.stderr


# ---------------------------------------------------------------------------------------------
# Pareto analysis on hand-made points
# ---------------------------------------------------------------------------------------------
def test_pareto_front_on_hand_made_points():
    pts = [
        {"id": "a", "acc": 0.90, "t": 10.0, "e": 5.0},
        {"id": "b", "acc": 0.92, "t": 12.0, "e": 5.0},
        {"id": "c", "acc": 0.89, "t": 11.0, "e": 6.0},    # dominated by a
        {"id": "d", "acc": 0.88, "t": 8.0, "e": 9.0},
        {"id": "e", "acc": 0.90, "t": 10.0, "e": 5.0},    # equal to a: both stay
        {"id": "f", "acc": 0.92, "t": 12.0, "e": 5.5},    # dominated by b (energy)
        {"id": "g", "acc": None, "t": 1.0, "e": 1.0},     # no accuracy: never on the front
        {"id": "h", "acc": 0.80, "t": 8.0, "e": 9.0},     # dominated by d
    ]
    obj = {"acc": "max", "t": "min", "e": "min"}
    front = pareto.pareto_front(pts, obj)
    assert [p["id"] for p in front] == ["b", "a", "e", "d"]
    assert {p["id"] for p in pareto.pareto_front(pts, {"t": "min", "e": "min"})} == {"g"}
    assert {p["id"] for p in pareto.pareto_front(pts, {"acc": "max"})} == {"b", "f"}
    # brute force on random data
    rng = np.random.default_rng(1)
    v = rng.integers(0, 6, size=(200, 3)).astype(float)
    mask = pareto.pareto_mask(v, [True, False, False])
    w = v * np.array([1, -1, -1])
    brute = [not any(np.all(w[j] >= w[i]) and np.any(w[j] > w[i]) for j in range(len(w))) for i in range(len(w))]
    assert mask.tolist() == brute
    # grouping per accelerator
    groups = pareto.fronts([{**p, "accel": "x"} for p in pts[:3]] + [{**pts[3], "accel": "y"}], ("accel",), obj)
    assert {k: {p["id"] for p in v} for k, v in groups.items()} == {("x",): {"a", "b"}, ("y",): {"d"}}
    with pytest.raises(HwsimError, match="nope"):
        pareto.pareto_front(pts, {"nope": "max"})


def test_best_gate_structure_within_tolerance():
    def pt(method, S, acc, t, seed):
        return {"design": "acc1", "gate_method": method, "gate_S": S, "gate_b": 1, "seed": seed,
                "linear_top1": acc, "time_us": t}
    pts = [pt("none", 1, 0.95, 100, 0), pt("none", 1, 0.97, 100, 1),     # dense: 0.96, 100
           pt("cdg", 1, 0.955, 70, 0), pt("cdg", 1, 0.955, 70, 1),      # 0.955 (within 0.01), 70
           pt("cdg", 8, 0.952, 50, 0), pt("cdg", 8, 0.948, 50, 1),      # 0.950 (within 0.01), 50
           pt("cdg", 64, 0.90, 20, 0)]                                   # too inaccurate
    best = pareto.best_gate_structure(pts, tolerance=0.01, structure=("gate_method", "gate_S", "gate_b"))
    assert len(best) == 1
    b = best[0]
    assert (b["gate_method"], b["gate_S"]) == ("cdg", 8)
    assert b["time_us"] == 50 and b["dense_time_us"] == 100 and b["gain_vs_dense"] == 2.0
    assert b["reference_accuracy"] == pytest.approx(0.96) and b["eligible"] == 3 and b["candidates"] == 4
    tight = pareto.best_gate_structure(pts, tolerance=0.006, structure=("gate_method", "gate_S", "gate_b"))[0]
    assert (tight["gate_method"], tight["gate_S"]) == ("cdg", 1)


def test_reduction_breakdown_shares_sum_to_one():
    # one gated layer: dense 1000 cycles (800 compute), needed MACs 40%, 3/4 of its folds ran
    layer = {"point_id": "p", "layer": "l", "dense_total_cycles": 1000.0, "dense_cycles": 800.0,
             "total_cycles": 850.0, "cycles": 700.0, "dense_macs": 100.0, "needed_macs": 40.0,
             "folds": 4.0, "folds_run": 3.0}
    loss = pareto.layer_losses(layer)
    assert loss["ideal_cycles"] == 400.0
    assert loss["granularity"] == pytest.approx(800 * (0.75 - 0.4))        # 280
    assert loss["overhead"] == pytest.approx(700 - 320 - 280)              # 100
    assert loss["memory"] == pytest.approx((850 - 700) - 200 * 0.4)        # 70
    rows = pareto.reduction_breakdown([{"point_id": "p", "design": "d", "gate_method": "cdg", "gate_S": 1,
                                        "gate_b": 1}], [layer])
    r = rows[0]
    shares = r["realised_share"] + sum(r[f"lost_{x}_share"] for x in pareto.LOSSES)
    assert shares == pytest.approx(1.0)
    assert r["ideal_speedup"] == pytest.approx(2.5) and r["speedup"] == pytest.approx(1000 / 850)
    assert r["flops_reduction"] == pytest.approx(2.5)


def test_breakdown_on_a_real_sweep_reconciles(setup):
    tmp, runs, accel, grid = setup
    dse.run_sweep([str(runs)], [str(accel)], tmp / "s", grid=str(grid), workers=1, progress=False)
    points, layers, _ = load_sweep(tmp / "s")
    for r in pareto.reduction_breakdown(points, layers, ("design", "run")):
        total = r["realised_share"] + sum(r[f"lost_{x}_share"] for x in pareto.LOSSES)
        assert total == pytest.approx(1.0)
        assert r["speedup"] == pytest.approx(next(p["speedup"] for p in points
                                                  if p["design"] == r["design"] and p["run"] == r["run"]))


def test_ray_gives_the_serial_results(setup):
    ray = pytest.importorskip("ray")
    tmp, runs, accel, grid = setup
    dse.run_sweep([str(runs)], [str(accel)], tmp / "a", grid=str(grid), workers=1, progress=False)
    try:
        dse.run_sweep([str(runs)], [str(accel)], tmp / "r", grid=str(grid), ray=True, progress=False,
                      ray_init={"num_cpus": 1})
    finally:
        if ray.is_initialized():
            ray.shutdown()
    a = {p["point_id"]: p["total_cycles"] for p in load_sweep(tmp / "a")[0]}
    r = {p["point_id"]: p["total_cycles"] for p in load_sweep(tmp / "r")[0]}
    assert a == r and len(r) == 8
