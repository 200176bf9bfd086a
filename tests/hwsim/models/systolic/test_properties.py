"""Invariants of the gated model, over random layers, arrays and masks (hypothesis)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsim.api import simulate_layer, simulate_layers
from hwsim.models.systolic.counts import dense_layer_counts, gated_layer_counts
from hwsim.models.systolic.model import energy_pj, total_cycles
from hwsim.trace import GateGrid, make_layer
from hwsim.workload import lower
from tests.hwsim.helpers import tiny_config, tiny_network

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cases(draw):
    c_in = draw(st.integers(2, 12))
    c_out = draw(st.integers(1, 20))
    k = draw(st.sampled_from([1, 3]))
    s = draw(st.sampled_from([1, 2]))
    h = draw(st.integers(max(k, 2), 9))
    gate = GateGrid(G=draw(st.sampled_from([2, 4])) if c_in >= 4 else 2, S=draw(st.integers(1, c_out)),
                    b=draw(st.integers(1, 3)))
    spec = make_layer("l", "conv", (c_in, h, h), c_out, k, s, k // 2, gate=gate)
    rows, cols = draw(st.sampled_from([(4, 4), (8, 4), (4, 8), (2, 16)]))
    df = draw(st.sampled_from(["os", "ws", "is"]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n = 2
    mask = rng.random((n, *spec.out_shape)) < draw(st.floats(0.0, 1.0))
    # a second mask with a subset of the gates on
    sub = mask & (rng.random(mask.shape) < draw(st.floats(0.0, 1.0)))
    return spec, rows, cols, df, mask, sub


def _cfg(df, rows, cols, mode, accumulation="faithful"):
    return tiny_config(dataflow=df, array={"rows": rows, "cols": cols}, accumulation=accumulation,
                       sparse={"mode": mode, "compact_overhead_cycles": 2, "index_bits": 8})


def _run(spec, cfg, mask):
    return gated_layer_counts(lower(spec), cfg, mask)


@SETTINGS
@given(cases())
def test_cycles_never_increase_when_more_gates_are_off(case):
    spec, rows, cols, df, mask, sub = case
    for mode in ("gate", "skip", "compact"):
        cfg = _cfg(df, rows, cols, mode)
        for full, fewer in zip(_run(spec, cfg, mask), _run(spec, cfg, sub)):
            assert fewer.cycles <= full.cycles
            assert fewer.macs <= full.macs
            assert total_cycles(fewer, cfg) <= total_cycles(full, cfg) + 1e-9


@SETTINGS
@given(cases())
def test_skipping_le_gating_le_dense(case):
    spec, rows, cols, df, mask, _ = case
    dense = dense_layer_counts(lower(spec), _cfg(df, rows, cols, "gate"))
    gate = _run(spec, _cfg(df, rows, cols, "gate"), mask)
    skip = _run(spec, _cfg(df, rows, cols, "skip"), mask)
    for g, s in zip(gate, skip):
        assert s.cycles <= g.cycles == dense.cycles
        # gating and skipping perform the same work; skipping only removes idle folds
        assert s.macs == g.macs <= dense.macs
        assert s.sram_ifmap_reads == g.sram_ifmap_reads <= dense.sram_ifmap_reads


@SETTINGS
@given(cases())
def test_energy_monotone_in_density(case):
    spec, rows, cols, df, mask, sub = case
    for mode in ("gate", "skip", "compact"):
        cfg = _cfg(df, rows, cols, mode)
        for full, fewer in zip(_run(spec, cfg, mask), _run(spec, cfg, sub)):
            e_full, e_fewer = energy_pj(full, cfg), energy_pj(fewer, cfg)
            assert e_fewer["total"] <= e_full["total"] * (1 + 1e-12)
            assert e_fewer["mac"] <= e_full["mac"] and e_fewer["dram_ifmap"] <= e_full["dram_ifmap"] + 1e-9


@SETTINGS
@given(cases())
def test_all_gates_on_gating_equals_dense_and_all_off_leaves_base(case):
    spec, rows, cols, df, mask, _ = case
    cfg = _cfg(df, rows, cols, "gate")
    dense = dense_layer_counts(lower(spec), cfg)
    on = _run(spec, cfg, np.ones_like(mask))[0]
    assert on.to_dict() == dense.to_dict()
    off = _run(spec, _cfg(df, rows, cols, "skip"), np.zeros_like(mask))[0]
    assert off.macs == spec.base_macs()
    assert off.dram_ifmap_reads <= dense.dram_ifmap_reads


@SETTINGS
@given(cases())
def test_dense_traffic_conserved(case):
    """Every operand word the array needs comes from DRAM at least once and passes through the
    SRAM: footprint <= DRAM reads <= SRAM reads; every output word written reaches DRAM, the
    excess being padding of partial write-buffer lines (at most one padded line per drain).
    SCALE-Sim's counting (the write buffer drains every partial sum)."""
    spec, rows, cols, df, _, _ = case
    g = lower(spec).gemm
    c = dense_layer_counts(lower(spec), _cfg(df, rows, cols, "skip", "scalesim"))
    assert g.ifmap_footprint() <= c.dram_ifmap_reads <= c.sram_ifmap_reads
    assert g.filter_footprint() <= c.dram_filter_reads <= c.sram_filter_reads
    writes = g.E * g.M if df == "os" else c.sram_ofmap_writes
    assert writes <= c.dram_ofmap_writes
    drain_words = 2048 - (2048 + 1) // 2            # half of the tiny config's 2 kB OFMAP SRAM
    drains = -(-c.dram_ofmap_writes // max(1, drain_words - cols)) + 1
    assert c.dram_ofmap_writes - writes <= drains * (cols - 1)
    assert c.macs == spec.dense_macs


def test_traffic_conserved_across_layers_and_totals():
    """Dense run of a layer table: a producer's output words equal its consumer's input
    footprint when shapes chain, and the totals are the sums of the per-layer figures."""
    cfg = _cfg("os", 4, 4, "skip")
    specs = [s for s in tiny_network()]
    run = simulate_layers(specs, cfg)
    by = {r.name: r for r in run.layers}
    stem, g1 = specs[0], specs[1]
    assert by["stem"].figures.counters["dram_ofmap_writes"] == int(np.prod(stem.out_shape))
    padded = lower(g1).gemm.ifmap_footprint()
    assert padded == (stem.out_shape[1] + 2) * (stem.out_shape[2] + 2) * stem.out_shape[0]
    t = run.totals()
    assert t["dram_bytes"] == sum(r.dram_bytes for r in run.layers)
    assert t["energy_pj"] == sum(r.energy_pj["total"] for r in run.layers)
    parts = sum(v for k, v in t.items() if k.startswith("energy_") and k.endswith("_pj") and k != "energy_pj")
    assert abs(parts - t["energy_pj"]) <= 1e-9 * t["energy_pj"]


def test_simulate_layer_with_masks_reports_savings():
    spec = make_layer("l", "conv", (8, 8, 8), 16, 3, 1, 1, gate=GateGrid(G=2, S=16, b=4))
    mask = np.zeros((1, *spec.out_shape), dtype=bool)
    mask[:, :, :4, :4] = True  # one of four spatial blocks active
    cfg = _cfg("os", 4, 4, "skip")
    r = simulate_layer(spec, cfg, mask)
    d = simulate_layer(spec, cfg)
    assert r.cycles < d.cycles and r.energy_pj["total"] < d.energy_pj["total"]
    assert r.speedup > 1 and 0 < r.energy_saving < 1
    assert r.macs == spec.base_macs() + 16 * 16 * spec.cond_macs_per_output()


@SETTINGS
@given(cases())
def test_faithful_outputs_reach_dram_once_and_spills_come_back(case):
    """Faithful accumulation: each output leaves for DRAM once; whatever partial sums were spilled
    are read back as often as written beyond the outputs; SRAM reads of partial sums never exceed
    their writes."""
    spec, rows, cols, df, _, _ = case
    g = lower(spec).gemm
    c = dense_layer_counts(lower(spec), _cfg(df, rows, cols, "skip"))
    assert c.dram_ofmap_writes - c.dram_ofmap_reads == pytest.approx(g.E * g.M * lower(spec).groups)
    assert 0 <= c.sram_ofmap_reads < c.sram_ofmap_writes
    assert c.dram_ofmap_reads <= c.sram_ofmap_reads
