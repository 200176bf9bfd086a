"""Hardware-aware gate tuning: per-layer prices from hwsim, the priced regulariser, bad input."""
import json
from pathlib import Path

import pytest

from cdg.config import load_config
from hwsim.trace.errors import UserError
from cdg.gating.base import gated_layers
from cdg.gating.controller import shift_gates
from cdg.tracing.hw_prices import layer_weights
from cdg.tracing.inventory import conv_inventory
from cdg.run.builders import build_model
from cdg.train import main

from tests.cdg.helpers import TINY

ROOT = Path(__file__).parents[3]
COMPACT = str(ROOT / "accel_configs" / "systolic_32x32_os_compact.yaml")


def _infos(*extra):
    cfg = load_config(None, [*TINY, "gate.method=cdg", "gate.target_reduction=2", "train.epochs=3",
                             "gate.warmup_epochs=1", "gate.ramp_epochs=1", *extra])
    model = build_model(cfg)
    return cfg, model, conv_inventory(model.backbone, cfg.data.image_size)


def test_prices_average_to_one_over_the_gated_macs_and_follow_the_hardware():
    cfg, _, infos = _infos()
    rows = layer_weights(infos, COMPACT, 0.5)
    gated = {i.name: i.gated_macs for i in infos if i.gate is not None}
    assert set(rows) == set(gated)
    mean = sum(rows[n]["weight"] * gated[n] for n in rows) / sum(gated.values())
    assert mean == pytest.approx(1.0)
    weights = [r["weight"] for r in rows.values()]
    assert max(weights) > 1.5 * min(weights)          # the array does not value every layer alike
    # a layer with the most saved cycles per MAC gets the highest price, and prices keep order
    order = sorted(rows, key=lambda n: rows[n]["saved_cycles_per_mac"])
    assert [rows[n]["weight"] for n in order] == sorted(weights)
    assert min(weights) > 0                          # the floor keeps every layer under some pressure


def test_hardware_that_saves_nothing_is_a_one_line_error(tmp_path):
    import yaml
    _, _, infos = _infos()
    cfg = yaml.safe_load(open(ROOT / "accel_configs" / "systolic_32x32_os.yaml"))
    cfg["sparse"] = {"mode": "gate"}        # clock gating: energy only, never cycles ...
    cfg["dram"]["bandwidth_gb_s"] = 1e6     # ... and compute-bound, so less traffic saves no time either
    gate_only = tmp_path / "gate_only.yaml"
    gate_only.write_text(yaml.safe_dump(cfg))
    with pytest.raises(UserError, match="saves no cycles"):
        layer_weights(infos, gate_only, 0.5)
    with pytest.raises(UserError, match="gate.hw_aware: .*not found"):
        layer_weights(infos, "no/such.yaml", 0.5)


def test_shift_scales_per_layer():
    _, model, _ = _infos()
    layers = dict(gated_layers(model.backbone))
    before = {n: l.threshold.detach().clone() for n, l in layers.items()}
    first = next(iter(layers))
    shift_gates(model.backbone, 0.1, {first: 3.0})
    for n, l in layers.items():
        moved = (l.threshold - before[n]).mean().item()
        assert moved == pytest.approx(0.3 if n == first else 0.1, abs=1e-6)


@pytest.mark.parametrize("overrides, message", [
    (["gate.method=cgnet", "gate.target_reduction=2", f"gate.hw_aware={COMPACT}"], "gate.hw_aware"),
    (["gate.method=cdg", "gate.target_reduction=2", "gate.hw_aware=missing.yaml"], "missing.yaml"),
])
def test_bad_hw_aware_settings_fail_before_training(tmp_path, capsys, overrides, message):
    with pytest.raises(SystemExit) as exc:
        main([*TINY, f"run.dir={tmp_path}", "run.name=bad", "train.epochs=3", "gate.warmup_epochs=1",
              "gate.ramp_epochs=1", *overrides])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_hw_aware_run_trains_and_records_its_prices(tmp_path):
    main([*TINY, f"run.dir={tmp_path}", "run.name=hw", "train.epochs=3", "gate.warmup_epochs=1",
          "gate.ramp_epochs=1", "gate.trace_images=4", "gate.method=cdg", "gate.target_reduction=2",
          f"gate.hw_aware={COMPACT}"])
    doc = json.loads((tmp_path / "hw" / "hw_aware.json").read_text())
    assert doc["accel"] == COMPACT and doc["layers"]
    assert all(row["weight"] > 0 for row in doc["layers"].values())
    assert (tmp_path / "hw" / "trace" / "trace.json").exists()
