"""python -m analysis.validate: measured execution.json + trace against the cpu model.

The fixtures' "measurements" are the model's own predictions distorted by a known factor, so
the agreement figures have a known value (real measurements come from python -m cdg.execute).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from analysis import dashboard
from analysis.validate import main
from analysis.validation import cross_run, read_execution, summary
from hwsim.api import simulate_trace
from hwsim.config import parse_config
from hwsim.trace import GateGrid
from hwsim.trace.errors import HwsimError
from hwsim.trace.synthetic import gate_3x3_convs, iid_masks, write_synthetic_trace
from tests.analysis.test_dashboard import make_sweep
from tests.hwsim.helpers import tiny_network
from tests.hwsim.models.cpu.helpers import cpu_dict


@pytest.fixture
def accel(tmp_path):
    path = tmp_path / "cpu.yaml"
    path.write_text(yaml.safe_dump(cpu_dict(path="union_gather")))   # a gather path, whose time follows the density
    return path


def _stat(ms):
    return {"median": ms, "q25": ms * 0.95, "q75": ms * 1.05}


def make_measurement(root, accel_path, density, gate=GateGrid(G=2, S=4, b=2), batch=1, distort=1.0, seed=0):
    """A directory with a synthetic trace and an execution.json whose sparse times are the cpu
    model's prediction x ``distort`` (dense times exact)."""
    specs = gate_3x3_convs(tiny_network(), gate, stem="stem")
    write_synthetic_trace(root / "trace", specs, batch, np.random.default_rng(seed), masks=iid_masks(density))
    cfg = parse_config(yaml.safe_load(accel_path.read_text()), "cpu").with_overrides(batch=batch)
    run = simulate_trace(root / "trace", cfg)
    ms = batch / cfg.clock_mhz / 1e3
    layers = [{"name": r.name, "path": "dense" if not r.gated else "spatial_gather", "density": density if r.gated else 1.0,
               "dense_macs": int(r.dense_macs), "executed_macs": int(r.needed_macs),
               "dense_ms": _stat(r.dense_total_cycles * ms),
               "sparse_ms": _stat(r.total_cycles * ms * (distort if r.gated else 1.0))} for r in run.layers]
    dense = sum(x["dense_ms"]["median"] for x in layers)
    sparse = sum(x["sparse_ms"]["median"] for x in layers)
    doc = {"version": 1, "kind": "synthetic", "device": "cpu", "threads": 2, "batch": batch, "image_size": 8,
           "torch_version": "test", "host": {"cpu_model": "test", "logical_cpus": 2}, "warmup": 1, "repetitions": 3,
           "trace": "trace", "layers": layers,
           "total": {"dense_ms": _stat(dense), "sparse_ms": _stat(sparse), "speedup": dense / sparse},
           "max_abs_error": 0.0}
    (root / "execution.json").write_text(json.dumps(doc))
    return root


def test_exact_measurements_agree_exactly(tmp_path, accel):
    rows = cross_run(make_measurement(tmp_path / "a", accel, 0.4), accel)
    assert [r.layer for r in rows] == ["stem", "g1", "g2", "sc", "fc", "(network)"]
    for r in rows:
        assert r.predicted_speedup == pytest.approx(r.measured_speedup)
    assert summary(rows)["gated_layers"]["mape_pct"] == pytest.approx(0.0, abs=1e-9)


def test_a_known_distortion_gives_its_error_and_keeps_the_ranking(tmp_path, accel):
    rows = []
    for i, d in enumerate((0.2, 0.5, 0.8)):
        rows += cross_run(make_measurement(tmp_path / f"r{i}", accel, d, distort=1.25, seed=i), accel)
    s = summary(rows)
    # measured speed-up = predicted / 1.25: |predicted / measured - 1| = 25 %
    assert s["gated_layers"]["mape_pct"] == pytest.approx(25.0)
    assert s["gated_layers"]["bias_pct"] == pytest.approx(25.0)
    assert s["gated_layers"]["n"] == 6 and s["networks"]["n"] == 3
    assert s["networks"]["spearman"] == pytest.approx(1.0)
    assert 0 < s["networks"]["mape_pct"] < 25.0      # ungated layers are exact, so the network is closer


def test_the_measured_batch_is_the_predicted_batch(tmp_path, accel):
    rows = cross_run(make_measurement(tmp_path / "b", accel, 0.5, batch=4), accel)
    assert all(r.predicted_speedup == pytest.approx(r.measured_speedup) for r in rows)


def test_cli_writes_tables_figure_and_the_sweep_entry(tmp_path, accel, capsys):
    runs = [make_measurement(tmp_path / f"r{i}", accel, d, distort=1.1, seed=i) for i, d in enumerate((0.3, 0.7))]
    sweep = make_sweep(tmp_path)
    out = tmp_path / "out"
    assert main(["--runs", *map(str, runs), "--accel", str(accel), "--out", str(out), "--sweep", str(sweep)]) == 0
    printed = capsys.readouterr().out
    assert "gated_layers" in printed and "MAPE 10.0 %" in printed
    doc = json.loads((out / "validation.json").read_text())
    assert doc["summary"]["gated_layers"]["mape_pct"] == pytest.approx(10.0)
    assert (out / "validation_layers.csv").read_text().count("\n") == 1 + 2 * 6
    assert "plotly" in (out / "validation.html").read_text()[:5000].lower()
    dash = dashboard.build(sweep)
    assert "validation" in dash.figures and 'id="fig-validation"' in dash.html


@pytest.mark.parametrize("edit,field", [
    (lambda d: d.pop("layers"), "layers"),
    (lambda d: d.update(version=2), "version"),
    (lambda d: d.update(batch=0), "batch"),
    (lambda d: d["layers"][1].update(sparse_ms={"median": -1}), "layers[1].sparse_ms"),
    (lambda d: d["layers"][1].update(name="nope"), "layers[1].name"),
])
def test_bad_measurements_are_one_line_errors(tmp_path, accel, edit, field):
    root = make_measurement(tmp_path / "m", accel, 0.5)
    doc = json.loads((root / "execution.json").read_text())
    edit(doc)
    (root / "execution.json").write_text(json.dumps(doc))
    with pytest.raises(HwsimError) as exc:
        cross_run(root, accel)
    assert exc.value.field == field and "\n" not in exc.value.one_line()


def test_missing_measurement_and_wrong_model_exit_2(tmp_path, accel, capsys):
    with pytest.raises(HwsimError, match="missing"):
        read_execution(tmp_path)
    root = make_measurement(tmp_path / "m", accel, 0.5)
    with pytest.raises(SystemExit) as exc:
        main(["--runs", str(root), "--accel", "accel_configs/gpu_a100.yaml"])
    assert exc.value.code == 2 and "need model 'cpu'" in capsys.readouterr().err
