"""gate.static_off: a statically removed conditional path (gate always off, base path only), its
MAC accounting, its validation, and a tiny run that meets the overall target around it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cdg.config import load_config
from cdg.gating.base import gated_layers, set_gating
from cdg.gating.controller import shift_gates
from cdg.gating.selection import build_gated_conv, names_layer
from cdg.gating.spec import make_gate, validate_gate
from cdg.run.builders import build_model
from cdg.tracing.hw_prices import target_density
from cdg.tracing.inventory import conv_inventory
from cdg.train import main
from hwsim.trace import load_trace
from hwsim.trace.errors import UserError

from tests.cdg.gating.helpers import spec_of
from tests.cdg.helpers import TINY

SHORT = ["train.epochs=3", "gate.warmup_epochs=1", "gate.ramp_epochs=1", "gate.method=cdg", "gate.target_reduction=2"]


def test_names_layer_takes_names_and_stage_prefixes():
    assert names_layer("layer4", "layer4.1.conv2") and names_layer("layer4.1", "layer4.1.conv2")
    assert names_layer("layer4.1.conv2", "layer4.1.conv2")
    assert not names_layer("layer4", "layer40.0.conv1") and not names_layer("layer4.1.conv", "layer4.1.conv2")


@pytest.mark.parametrize("channel_block", [1, 4])
def test_static_layer_computes_the_base_path_only_in_every_mode(channel_block):
    torch.manual_seed(0)
    layer = build_gated_conv(spec_of(8, 8), make_gate("cdg", channel_block=channel_block, static_off=True))
    x = torch.randn(3, 8, 6, 6, requires_grad=True)
    base = F.conv2d(x[:, :2], layer.weight[:, :2], None, 1, 1)
    for training, gating in ((True, True), (True, False), (False, True)):
        layer.train(training)
        layer.gating = gating
        y = layer(x)
        torch.testing.assert_close(y, base)
        rec = layer.record
        assert not rec.mask.any() and float(rec.soft_density) == 0.0
        assert rec.macs["conditional"].sum() == 0 and rec.macs["gate"].sum() == 0
        assert torch.equal(rec.macs["total"], rec.macs["base"])
    layer.train(True)
    layer(x).sum().backward()
    assert layer.threshold.grad is not None and not layer.threshold.grad.any()  # in the graph, never moved
    assert not layer.weight.grad[:, 2:].any() and layer.weight.grad[:, :2].any()


def test_static_layer_has_no_gate_overhead_and_ignores_shifts():
    cfg = load_config(None, [*TINY, *SHORT, "gate.static_off=[layer4]"])
    model = build_model(cfg)
    layers = dict(gated_layers(model.backbone))
    static = {n for n, l in layers.items() if l.gate.static_off}
    assert static == {n for n in layers if n.startswith("layer4.")} and static
    before = {n: l.threshold.detach().clone() for n, l in layers.items()}
    shift_gates(model.backbone, 0.5)
    for n, l in layers.items():
        assert torch.equal(l.threshold, before[n]) == (n in static)
    infos = {i.name: i for i in conv_inventory(model.backbone, cfg.data.image_size)}
    assert all(infos[n].overhead_macs == 0 for n in static)
    assert all(infos[n].overhead_macs > 0 for n in layers if n not in static)


def test_target_density_counts_the_removed_paths():
    cfg = load_config(None, [*TINY, *SHORT, "gate.static_off=[layer4]"])
    infos = conv_inventory(build_model(cfg).backbone, cfg.data.image_size)
    d = target_density(infos, 0.5)
    dense = sum(i.dense_macs for i in infos)
    effective = sum(i.dense_macs - i.gated_macs + i.overhead_macs
                    + (0 if i.gate is not None and i.gate.static_off else d * i.gated_macs) for i in infos)
    assert effective / dense == pytest.approx(0.5)


def test_static_off_needs_a_method_that_can_remove_its_path():
    with pytest.raises(UserError, match=r"gate\.static_off: only method 'cdg'"):
        validate_gate(spec_of(), make_gate("cgnet", static_off=True))


@pytest.mark.parametrize("overrides, message", [
    (["gate.static_off=[layer9]"], "gate.static_off: 'layer9' names no gated conv"),
    (["gate.static_off=[layer4.0.shortcut]"], "gate.static_off: 'layer4.0.shortcut' names no gated conv"),
    (["gate.static_off=[layer4]", "gate.method=cgnet"], "gate.static_off needs gate.method cdg"),
])
def test_bad_static_off_is_a_one_line_error_naming_the_field(tmp_path, capsys, overrides, message):
    with pytest.raises(SystemExit) as exc:
        main([*TINY, f"run.dir={tmp_path}", "run.name=bad", *SHORT, *overrides])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_run_with_static_layer4_meets_the_target_and_traces_it_off(tmp_path):
    main([*TINY, f"run.dir={tmp_path}", "run.name=static", *SHORT, "gate.trace_images=4", "gate.static_off=[layer4]"])
    summary = json.loads((tmp_path / "static" / "summary.json").read_text())
    assert summary["reduction_full"] == pytest.approx(2.0, rel=0.05)
    trace = load_trace(tmp_path / "static" / "trace")
    layer4 = [layer for layer in trace.layers if layer.spec.name.startswith("layer4.") and layer.spec.gate is not None]
    others = [layer for layer in trace.layers if layer.spec.gate is not None and not layer.spec.name.startswith("layer4.")]
    assert layer4 and all(layer.stats.gate_density_mean == 0.0 for layer in layer4)
    assert all(not np.asarray(layer.gate_blocks).any() for layer in layer4)
    assert any(layer.stats.gate_density_mean > 0 for layer in others)


def test_training_mac_meter_counts_the_removed_path_as_not_performed():
    from cdg.run.train_macs import performed_macs_per_image

    plain = build_model(load_config(None, [*TINY, *SHORT])).backbone
    static = build_model(load_config(None, [*TINY, *SHORT, "gate.static_off=[layer4]"])).backbone
    infos = {i.name: i for i in conv_inventory(plain, 8)}
    removed = sum(i.gated_macs + i.overhead_macs for n, i in infos.items() if n.startswith("layer4.") and i.gate is not None)
    assert removed > 0
    (p_plain, d_plain), (p_static, d_static) = performed_macs_per_image(plain, 8), performed_macs_per_image(static, 8)
    assert d_plain == d_static and p_plain - p_static == removed
