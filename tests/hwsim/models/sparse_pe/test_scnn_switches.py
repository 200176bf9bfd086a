"""SCNN switches of the sparse-PE model: off = unchanged, Cartesian packing by hand, halo and
crossbar each cost in the documented direction, weight density, config errors."""
import copy
import math

import numpy as np
import pytest
import yaml

from hwsim.config import parse_config
from hwsim.models.sparse_pe import model as sparse_pe
from hwsim.models.sparse_pe.cartesian import crossbar_table, expected_ceil, expected_max_load
from hwsim.trace import GateGrid, make_layer
from hwsim.trace.errors import HwsimError
from hwsim.workload import lower
from tests.hwsim.helpers import ROOT

BASE = yaml.safe_load((ROOT / "accel_configs" / "sparse_pe.yaml").read_text())
SCNN = yaml.safe_load((ROOT / "accel_configs" / "sparse_pe_scnn.yaml").read_text())


def cart(rows=2, cols=2, cps=3, f=4, i=2, **extra):
    """Cartesian-packing config of rows x cols PEs with an f x i multiplier array."""
    data = copy.deepcopy(BASE)
    data.update(pes=rows * cols, macs_per_pe=f * i, spatial_tile=dict(rows=rows, cols=cols, channels_per_step=cps),
                packing="cartesian", cartesian=dict(weights=f, acts=i), **extra)
    return parse_config(data, "test")


CONV = make_layer("c", "conv", (2, 4, 4), 3, 3, 1, 1)          # 2 in, 3 out, 3x3, 4x4 plane


# ---------------------------------------------------------------------------------------------
# off by default: the optimistic bound is unchanged
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("partition", ["output_channel", "spatial_tile", "dynamic"])
def test_switches_off_give_identical_figures(partition):
    plain = parse_config(dict(copy.deepcopy(BASE), partition=partition), "plain")
    explicit = parse_config(dict(copy.deepcopy(BASE), partition=partition, packing="ideal", weight_density=None,
                                 halo=False, crossbar=False, cartesian=None, scatter=None), "explicit")
    spec = make_layer("g", "conv", (8, 8, 8), 8, 3, 1, 1, gate=GateGrid(G=2, S=1, b=1))
    work = lower(spec)
    rng = np.random.default_rng(0)
    gates, acts = rng.random((2, 8, 8, 8)) < 0.4, rng.random((2, 8, 8, 8)) < 0.5
    assert sparse_pe.dense(work, plain) == sparse_pe.dense(work, explicit)
    a, b = sparse_pe.sparse(work, plain, gates, acts), sparse_pe.sparse(work, explicit, gates, acts)
    assert a == b
    assert "halo_words" not in a[0].counters and "crossbar_stall_cycles" not in a[0].counters


def test_shipped_configs_leave_the_switches_off_except_the_scnn_file():
    for path in sorted((ROOT / "accel_configs").glob("sparse_pe*.yaml")):
        data = yaml.safe_load(path.read_text())
        cfg = parse_config(data, str(path))
        if path.name == "sparse_pe_scnn.yaml":
            assert cfg.packing == "cartesian" and cfg.halo and cfg.crossbar
        else:
            assert cfg.packing == "ideal" and not cfg.halo and not cfg.crossbar and cfg.weight_density is None


# ---------------------------------------------------------------------------------------------
# Cartesian packing by hand
# ---------------------------------------------------------------------------------------------
def test_cartesian_dense_by_hand():
    # each PE holds a 2x2 input tile: per input channel ceil(3 channels x 9 weights / F=4) = 7
    # weight vectors x ceil(4 activations / I=2) = 2 activation vectors = 14 cycles; 2 channels
    f = sparse_pe.dense(lower(CONV), cart())
    assert f.cycles == 28 and f.macs == CONV.dense_macs == 864
    assert f.counters["steps"] == 1 and f.counters["halo_words"] == 0


def test_cartesian_with_act_masks_by_hand():
    acts = np.zeros((1, 2, 4, 4), bool)
    acts[0, 0, 0, :2] = True
    acts[0, 0, 1, 0] = True          # tile (0, 0), channel 0: 3 non-zeros -> 2 vectors of I=2
    acts[0, 1, 1, 1] = True          # tile (0, 0), channel 1: 1 non-zero -> 1 vector
    acts[0, 1, 3, 3] = True          # tile (1, 1), channel 1: 1 non-zero -> 1 vector
    f = sparse_pe.sparse(lower(CONV), cart(), None, acts)[0]
    assert f.cycles == 7 * 2 + 7 * 1                   # the slowest PE, tile (0, 0)
    assert f.macs == 27 * 5                             # every non-zero x the 27 weights of its channel
    assert f.counters["imbalance"] == pytest.approx(21 / ((21 + 7) / 4))


def test_cartesian_depthwise_is_limited_to_one_output_channel_per_input_channel():
    dw = make_layer("d", "conv", (8, 8, 8), 8, 3, 1, 1, groups=8)
    # per channel: 1 output channel x 9 weights -> ceil(9/4) = 3 vectors x ceil(16/2) = 8 -> 24
    # cycles; a step of 4 channels -> 96; 2 steps -> 192, 75 % of the 4 x 8 multipliers
    f = sparse_pe.dense(lower(dw), cart(cps=4))
    assert f.cycles == 192 and f.macs == dw.dense_macs
    ideal = sparse_pe.dense(lower(dw), parse_config(dict(copy.deepcopy(BASE), pes=4, macs_per_pe=8,
                                                         spatial_tile=dict(rows=2, cols=2, channels_per_step=4)), "i"))
    assert ideal.cycles == dw.dense_macs / 32 < f.cycles


def test_cartesian_strided_conv_pairs_stride_phases():
    # 2x2 kernel, stride 2: each of the 4 phases meets 1 weight position; 4 activations per phase
    spec = make_layer("s", "conv", (1, 4, 4), 1, 2, 2, 0)
    f = sparse_pe.dense(lower(spec), cart(rows=1, cols=1, cps=1, f=1, i=1))
    assert f.cycles == f.macs == spec.dense_macs == 16     # no product lands between outputs


def test_weight_density_expected_vector_lengths():
    spec = make_layer("p", "conv", (1, 2, 2), 2, 1)        # 1x1, 2 output channels, one PE
    cfg = cart(rows=1, cols=1, cps=2, f=2, i=2)
    assert sparse_pe.dense(lower(spec), cfg).cycles == 2   # 1 weight vector x 2 activation vectors
    half = sparse_pe.dense(lower(spec), cfg.with_overrides(weight_density=0.5))
    # 2 weights each kept with p = 1/2: E[ceil(X / 2)] = P(X >= 1) = 3/4 weight vectors
    assert half.cycles == pytest.approx(0.75 * 2) and half.macs == pytest.approx(4.0)
    assert expected_ceil(27, 0.3, 4) == pytest.approx(sum(math.comb(27, k) * 0.3 ** k * 0.7 ** (27 - k) * -(-k // 4)
                                                          for k in range(28)))
    # ideal packing: the expected MACs scale; the compressed weights shrink the filter traffic
    ideal = parse_config(dict(copy.deepcopy(BASE), weight_density=0.5), "w")
    layer = lower(CONV)
    a, b = sparse_pe.dense(layer, parse_config(copy.deepcopy(BASE), "d")), sparse_pe.dense(layer, ideal)
    assert b.macs == pytest.approx(a.macs / 2) and b.traffic_bytes["dram_filter_read"] < a.traffic_bytes["dram_filter_read"]


def test_cartesian_gates_contract_and_skipping():
    spec = make_layer("g", "conv", (8, 8, 8), 8, 3, 1, 1, gate=GateGrid(G=2, S=1, b=1))
    work = lower(spec)
    cfg = cart(cps=4)
    dense = sparse_pe.dense(work, cfg)
    on = sparse_pe.sparse(work, cfg, np.ones((2, *spec.out_shape), bool))
    off = sparse_pe.sparse(work, cfg, np.zeros((1, *spec.out_shape), bool))[0]
    assert all(f == dense for f in on)
    assert off.macs < dense.macs and off.cycles < dense.cycles
    assert off.macs == pytest.approx(dense.macs * spec.gate.base_channels / 8)


# ---------------------------------------------------------------------------------------------
# halo and crossbar: each costs, in the documented direction
# ---------------------------------------------------------------------------------------------
def test_halo_exchange_adds_cycles_and_traffic_by_hand():
    off = sparse_pe.dense(lower(CONV), cart())
    on = sparse_pe.dense(lower(CONV), cart(halo=True, halo_words_per_cycle=4))
    # a 2x2 input tile reaches 3x3 outputs of the 3x3 conv, 4 of them its own: 5 halo outputs x 3
    # channels = 15 partial sums per PE, 4 PEs; 15 / 4 words per cycle on the slowest PE
    assert on.counters["halo_words"] == 60 and on.cycles == 28 + 15 / 4
    assert on.energy_pj["total"] > off.energy_pj["total"] and on.macs == off.macs
    one = make_layer("p", "conv", (2, 4, 4), 3, 1)           # 1x1: every output is the tile's own
    assert sparse_pe.dense(lower(one), cart(halo=True)).counters["halo_words"] == 0


def test_bank_conflicts_by_hand():
    assert expected_max_load(2, 2) == pytest.approx(1.5)          # same bank half the time
    assert expected_max_load(2, 3) == pytest.approx(4 / 3)
    assert expected_max_load(1, 7) == 1.0 and expected_max_load(5, 1) == 5.0
    rng = np.random.default_rng(0)
    draws = rng.integers(0, 32, (20000, 40))
    mc = np.mean([np.bincount(r, minlength=32).max() for r in draws])
    assert expected_max_load(40, 32) == pytest.approx(mc, rel=0.01)


def test_crossbar_costs_cycles_less_with_more_banks_and_deeper_queues():
    off = sparse_pe.dense(lower(CONV), cart())
    cycles = {}
    for banks, q in ((4, 0), (16, 0), (64, 0), (16, 4)):
        cfg = cart(crossbar=True, scatter=dict(banks=banks, queue_depth=q))
        f = sparse_pe.dense(lower(CONV), cfg)
        assert f.counters["crossbar_stall_cycles"] > 0 and f.macs == off.macs
        cycles[banks, q] = f.cycles
        table = crossbar_table(cfg)
        assert table[0] == 1.0 and np.all(np.diff(table) >= -1e-12) and table[1] == 1.0
    assert cycles[4, 0] > cycles[16, 0] > cycles[64, 0] > off.cycles
    assert cycles[16, 4] < cycles[16, 0]


# ---------------------------------------------------------------------------------------------
# configuration errors name the field
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, field", [
    (dict(packing="diagonal"), "packing"),
    (dict(cartesian=None), "cartesian"),
    (dict(cartesian=dict(weights=4, acts=2)), "cartesian.weights"),
    (dict(partition="dynamic"), "packing"),
    (dict(weight_density=0), "weight_density"),
    (dict(weight_density=1.5), "weight_density"),
    (dict(halo="maybe"), "halo"),
    (dict(halo_words_per_cycle=0), "halo_words_per_cycle"),
    (dict(scatter=None), "scatter"),
    (dict(scatter=dict(banks=32, queue_depth=64)), "scatter.queue_depth"),
    (dict(scatter=dict(banks=0)), "scatter.banks"),
    (dict(packing="ideal"), "halo"),
    (dict(packing="ideal", halo=False), "crossbar"),
])
def test_bad_scnn_fields_name_the_field(change, field):
    data = copy.deepcopy(SCNN)
    data.update(change)
    with pytest.raises(HwsimError) as exc:
        parse_config(data, "bad.yaml")
    assert exc.value.field == field and "\n" not in str(exc.value)
