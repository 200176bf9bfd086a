"""The model-generic API: mask sources, the statistics path, FLOPs reduction vs realised saving."""
import math

import numpy as np
import pytest

from hwsim.api import simulate_layer, simulate_trace, stats_masks
from hwsim.trace.errors import HwsimError
from hwsim.trace import GateGrid, LayerStats, TraceWriter

from tests.hwsim.helpers import tiny_config, tiny_network, write_trace


def _stats_only_trace(path, density):
    with TraceWriter(path, meta={"model": "tiny"}) as tw:
        for spec in tiny_network():
            if spec.gate is None:
                tw.add_layer(spec)
            else:
                tw.add_layer(spec, stats=LayerStats(n_images=100, gate_density_mean=density,
                                                    input_act_density=0.5))
    return path


def test_real_masks_are_reported_as_such(tmp_path):
    run = simulate_trace(write_trace(tmp_path / "t"), tiny_config())
    assert run.mask_source == "masks" and run.n_images == 4
    gated = [r for r in run.layers if r.gated]
    assert gated and all(r.mask_source == "masks" for r in gated)
    by = {r.name: r for r in run.layers}
    assert by["sc"].mask_source == "masks"      # ungated, but the trace has its input-activation masks
    assert by["fc"].mask_source == "none"       # no gate, no activation information


def test_trace_without_masks_uses_the_layer_statistics(tmp_path):
    lo = simulate_trace(_stats_only_trace(tmp_path / "lo", 0.2), tiny_config())
    hi = simulate_trace(_stats_only_trace(tmp_path / "hi", 0.8), tiny_config())
    assert lo.mask_source == "stats" and lo.n_images == 32
    for run, density in ((lo, 0.2), (hi, 0.8)):
        for r in run.layers:
            if r.gated:
                # needed MACs follow the measured density (iid decisions, 32 images)
                spec = next(s for s in tiny_network() if s.name == r.name)
                expected = spec.base_macs() + density * np.prod(spec.out_shape) * spec.cond_macs_per_output()
                assert r.needed_macs == pytest.approx(expected, rel=0.1)
    assert lo.totals()["flops_reduction"] > hi.totals()["flops_reduction"] > 1.0
    assert lo.totals()["total_cycles"] <= hi.totals()["total_cycles"]


def test_stats_masks_are_on_the_decision_grid():
    spec = tiny_network(GateGrid(G=2, S=4, b=2))[1]
    m = stats_masks(spec, 0.5, n_images=3)
    assert m.shape == (3, *spec.out_shape)
    # every S x b x b block shares one decision
    blocks = m.reshape(3, 2, 4, 4, 2, 4, 2)
    assert (blocks.min(axis=(2, 4, 6)) == blocks.max(axis=(2, 4, 6))).all()


def test_flops_reduction_and_realised_saving():
    spec = tiny_network()[1]
    cfg = tiny_config(sparse={"mode": "gate", "compact_overhead_cycles": 0, "index_bits": 0})
    off = np.zeros((2, *spec.out_shape), dtype=bool)
    r = simulate_layer(spec, cfg, gate_masks=off)
    assert r.needed_macs == spec.base_macs()
    assert r.flops_reduction == pytest.approx(spec.dense_macs / spec.base_macs())
    # gate mode saves energy, never cycles: none of the gated-off work becomes time
    assert r.speedup == 1.0 and r.zero_work_removed == 0.0
    dense = simulate_layer(spec, cfg)
    assert dense.flops_reduction == 1.0 and math.isnan(dense.zero_work_removed)
    assert dense.mask_source == "none" and r.mask_source == "masks"


def test_activation_masks_are_checked():
    spec = tiny_network()[1]
    with pytest.raises(HwsimError, match="act_masks"):
        simulate_layer(spec, tiny_config(), act_masks=np.ones((1, 3, 8, 8), dtype=bool))
