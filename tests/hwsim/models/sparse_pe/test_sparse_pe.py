"""The sparse-PE model: contract identities, balance bounds, monotonicity, metadata, config errors."""
import copy
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsim.models.sparse_pe import model as sparse_pe
from hwsim.api import simulate_layer
from hwsim.config import load_config, parse_config
from hwsim.trace.errors import HwsimError
from hwsim.models.sparse_pe.kernels import run_length_entries
from hwsim.trace import GateGrid, make_layer
from hwsim.workload import lower
from tests.hwsim.helpers import ROOT, write_trace

YAML = ROOT / "accel_configs" / "sparse_pe.yaml"
BASE = yaml.safe_load(YAML.read_text())
PARTITIONS = ("output_channel", "spatial_tile", "dynamic")
FORMATS = ("bitmask", "run_length", "coordinate")


def cfg_of(pes=4, mpp=2, partition="output_channel", fmt="run_length", skip=True, rows=2, cols=2, cps=2,
           unit=4, dispatch=1.0, dec=1.0, **extra):
    data = copy.deepcopy(BASE)
    data.update(pes=pes, macs_per_pe=mpp, partition=partition, format=fmt, skip_zero_acts=skip,
                spatial_tile=dict(rows=rows, cols=cols, channels_per_step=cps),
                dynamic=dict(unit_outputs=unit, dispatch_cycles=dispatch),
                gate_decision=dict(cycles=dec, compare_pj=0.1), **extra)
    return parse_config(data, "test")


def gated(c_in=8, c_out=8, h=8, k=3, s=1, gate=GateGrid(G=2, S=1, b=1)):
    return make_layer("g", "conv", (c_in, h, h), c_out, k, s, k // 2, gate=gate)


def ref_window_nonzeros(spec, act, lo, hi):
    """Numpy reference: non-zero inputs of channels [lo, hi) in every output window (zero padding)."""
    (kh, kw), (sh, sw), (ph, pw) = spec.kernel, spec.stride, spec.padding
    x = np.pad(act[lo:hi].astype(np.int64), ((0, 0), (ph, ph), (pw, pw)))
    _, ho, wo = spec.out_shape
    out = np.zeros((ho, wo))
    for oy in range(ho):
        for ox in range(wo):
            out[oy, ox] = x[:, oy * sh:oy * sh + kh, ox * sw:ox * sw + kw].sum()
    return out.reshape(-1)


# ---------------------------------------------------------------------------------------------
# contract identities
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("partition", PARTITIONS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_all_gates_on_without_activation_info_equals_dense(partition, fmt):
    spec = gated()
    work = lower(spec)
    cfg = cfg_of(partition=partition, fmt=fmt)
    on = sparse_pe.sparse(work, cfg, np.ones((3, *spec.out_shape), dtype=bool), None, None)
    dense = sparse_pe.dense(work, cfg)
    assert len(on) == 3 and all(f == dense for f in on)
    assert dense.macs == spec.dense_macs


@pytest.mark.parametrize("partition", PARTITIONS)
def test_all_gates_off_leaves_the_base_path(partition):
    spec = gated()
    work = lower(spec)
    cfg = cfg_of(partition=partition)
    off = sparse_pe.sparse(work, cfg, np.zeros((2, *spec.out_shape), dtype=bool), None, None)[0]
    dense = sparse_pe.dense(work, cfg)
    assert off.macs == spec.base_macs() < dense.macs
    assert off.cycles >= spec.base_macs() / cfg.peak_macs_per_cycle()
    assert off.cycles < dense.cycles and off.energy_pj["total"] < dense.energy_pj["total"]
    # decisions are still taken and outputs still written: the overheads gating does not remove
    assert off.counters["decisions"] == dense.counters["decisions"] == np.prod(spec.out_shape)
    assert off.traffic_bytes["sram_ofmap_write"] == dense.traffic_bytes["sram_ofmap_write"]


def test_zero_activations_are_skipped_per_window_with_padding_as_zero():
    spec = gated(c_in=6, c_out=4, h=7, k=3, s=2, gate=GateGrid(G=2, S=2, b=1, base_channels=2))
    rng = np.random.default_rng(1)
    act = rng.random((2, *spec.in_shape)) < 0.4
    gate = rng.random((2, *spec.out_shape)) < 0.5
    figs = sparse_pe.sparse(lower(spec), cfg_of(), gate, act, None)
    for i in range(2):
        nzb = ref_window_nonzeros(spec, act[i], 0, 2)
        nzc = ref_window_nonzeros(spec, act[i], 2, 6)
        expected = (nzb[None, :] + gate[i].reshape(4, -1) * nzc[None, :]).sum()
        assert figs[i].macs == expected
        assert figs[i].counters["ifmap_words_stored"] >= act[i].sum()
    # the same activations, zeros not skipped: full windows (padding included), as without masks
    no_skip = sparse_pe.sparse(lower(spec), cfg_of(skip=False), gate, act, None)
    no_info = sparse_pe.sparse(lower(spec), cfg_of(skip=False), gate, None, None)
    assert [f.macs for f in no_skip] == [f.macs for f in no_info]
    assert no_skip[0].counters["act_meta_bits"] == 0


def test_fewer_activation_images_than_gate_images():
    spec = gated()
    rng = np.random.default_rng(2)
    act = rng.random((1, *spec.in_shape)) < 0.5
    gate = np.repeat(rng.random((1, *spec.out_shape)) < 0.5, 3, axis=0)
    figs = sparse_pe.sparse(lower(spec), cfg_of(), gate, act, None)
    # images without act masks use the mean of those with masks (here: the one image)
    assert figs[0].macs == figs[1].macs == figs[2].macs
    dens = sparse_pe.sparse(lower(spec), cfg_of(), gate, act, 0.0)
    # ... or the given density: 0 leaves no MACs for images 1 and 2
    assert dens[0].macs == figs[0].macs and dens[1].macs == dens[2].macs == 0


def test_density_expectation_and_run_length_metadata():
    spec = gated(c_in=16, c_out=4, h=16)
    rng = np.random.default_rng(3)
    act = rng.random((4, *spec.in_shape)) < 0.3
    cfg = cfg_of(fmt="run_length", run_bits=2)
    ones = np.ones((4, *spec.out_shape), dtype=bool)
    exact = sparse_pe.sparse(lower(spec), cfg, ones, act, None)
    expect = sparse_pe.sparse(lower(spec), cfg, ones, None, float(act.mean()))
    for key in ("macs",):
        assert getattr(expect[0], key) == pytest.approx(np.mean([getattr(f, key) for f in exact]), rel=0.03)
    m_exact = np.mean([f.counters["act_meta_bits"] for f in exact])
    assert expect[0].counters["act_meta_bits"] == pytest.approx(m_exact, rel=0.05)
    # hand case: runs of 5 and 2 zeros with a 2-bit field (max run 3): 2 non-zeros + 1 padding
    nnz, pad = run_length_entries(np.array([[0, 0, 0, 0, 0, 1, 0, 0, 1, 0]], dtype=bool), 3)
    assert (nnz[0], pad[0]) == (2, 1)


# ---------------------------------------------------------------------------------------------
# balance
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("partition", PARTITIONS)
def test_uniform_masks_reach_the_density_proportional_bound(partition):
    spec = gated(c_in=8, c_out=8, h=8)
    cfg = cfg_of(pes=4, mpp=2, partition=partition, rows=2, cols=2, cps=2, unit=16, dispatch=0.0)
    yy, xx = np.mgrid[0:8, 0:8]
    checker = ((yy + xx) % 2 == 0)[None, None]
    gate = np.broadcast_to(checker, (1, *spec.out_shape)).copy()   # every channel, tile, unit alike
    f = sparse_pe.sparse(lower(spec), cfg, gate, None, None)[0]
    ideal = (f.macs / cfg.macs_per_pe + f.counters["decisions"] * cfg.gate_decision.cycles) / cfg.pes
    assert ideal <= f.cycles <= ideal + f.counters["steps"]      # one rounding cycle per step at most
    assert f.counters["imbalance"] == pytest.approx(1.0, abs=0.02)
    assert f.counters["imbalance_cycles"] <= 0.02 * f.cycles
    assert f.counters["idle_pe_fraction"] == 0.0


@pytest.mark.parametrize("partition", ("output_channel", "spatial_tile"))
def test_all_work_on_one_pe_gives_the_imbalance_bound(partition):
    # no base path (base_channels=0): an output with its gate off costs nothing
    spec = gated(c_in=8, c_out=4, h=8, gate=GateGrid(G=2, S=1, b=1, base_channels=0))
    cfg = cfg_of(pes=4, mpp=2, partition=partition, rows=2, cols=2, cps=4, dec=0.0)
    gate = np.zeros((1, *spec.out_shape), dtype=bool)
    if partition == "output_channel":
        gate[0, 0] = True                         # channel 0 = PE 0
    else:
        gate[0, :, :4, :4] = True                 # tile (0, 0) = PE 0
    f = sparse_pe.sparse(lower(spec), cfg, gate, None, None)[0]
    pe0 = math.ceil(f.macs / cfg.macs_per_pe)
    assert f.cycles == pe0 and f.counters["imbalance"] == pytest.approx(cfg.pes)
    # every cycle beyond the balanced share (total work / PEs) is counted as imbalance
    assert f.counters["imbalance_cycles"] == pytest.approx(pe0 * (1 - 1 / cfg.pes))
    # a dynamic queue spreads the same work: within one unit of the balanced bound
    dyn = sparse_pe.sparse(lower(spec), cfg_of(pes=4, mpp=2, partition="dynamic", unit=4, dispatch=0.0, dec=0.0),
                           gate, None, None)[0]
    assert dyn.macs == f.macs
    assert dyn.cycles <= f.macs / cfg.macs_per_pe / cfg.pes + 4 * 72 / cfg.macs_per_pe < f.cycles


def test_structured_gates_balance_unstructured_gates_are_sparser():
    """The same needed outputs (10% of them), gated unstructured (one decision per output) or
    structured (channel slices: one decision per S=2 channels x the whole 16x16 plane, on where
    any needed output lies), on PEs that split the plane into tiles."""
    c, h = 16, 16
    rng = np.random.default_rng(4)
    need = rng.random((8, c, h, h)) < 0.1
    need[:, :4] = False                                     # some slices need nothing
    slices = need.reshape(8, c // 2, 2 * h * h).any(axis=2)
    structured = np.repeat(slices, 2, axis=1)[:, :, None, None].repeat(h, 2).repeat(h, 3)
    unstr = gated(c_in=16, c_out=c, h=h, gate=GateGrid(G=4, S=1, b=1))
    strc = gated(c_in=16, c_out=c, h=h, gate=GateGrid(G=4, S=2, b=h))
    cfg = cfg_of(pes=16, mpp=4, partition="spatial_tile", rows=4, cols=4, cps=4, dec=0.0)
    fu = sparse_pe.sparse(lower(unstr), cfg, need, None, None)
    fs = sparse_pe.sparse(lower(strc), cfg, structured, None, None)
    imb_u = np.mean([f.counters["imbalance"] for f in fu])
    imb_s = np.mean([f.counters["imbalance"] for f in fs])
    assert imb_s == pytest.approx(1.0) and imb_u > 1.05                # balance advantage
    assert np.mean([f.macs for f in fu]) < 0.6 * np.mean([f.macs for f in fs])   # density advantage


# ---------------------------------------------------------------------------------------------
# monotonicity (hypothesis)
# ---------------------------------------------------------------------------------------------
@st.composite
def cases(draw):
    c_in = draw(st.integers(2, 10))
    c_out = draw(st.integers(1, 12))
    k = draw(st.sampled_from([1, 3]))
    s = draw(st.sampled_from([1, 2]))
    h = draw(st.integers(max(k, 2), 9))
    gate = GateGrid(G=2, S=draw(st.integers(1, c_out)), b=draw(st.integers(1, 3)),
                    base_channels=draw(st.integers(0, c_in - 1)))
    spec = make_layer("l", "conv", (c_in, h, h), c_out, k, s, k // 2, gate=gate)
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    grid = spec.gate_grid(2)
    blocks = rng.random(grid) < draw(st.floats(0.0, 1.0))
    sub = blocks & (rng.random(grid) < draw(st.floats(0.0, 1.0)))
    from hwsim.trace import expand_gate_blocks
    act = rng.random((2, *spec.in_shape)) < draw(st.floats(0.0, 1.0)) if draw(st.booleans()) else None
    hw = dict(pes=draw(st.sampled_from([1, 3, 4])), mpp=draw(st.sampled_from([1, 2, 16])),
              unit=draw(st.integers(1, 9)), skip=draw(st.booleans()))
    return spec, expand_gate_blocks(blocks, spec), expand_gate_blocks(sub, spec), act, hw


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_cycles_and_energy_never_rise_as_gates_turn_off(case):
    spec, full, fewer, act, hw = case
    work = lower(spec)
    rows = 2 if hw["pes"] == 4 else 1
    for partition in PARTITIONS:
        for fmt in FORMATS:
            cfg = cfg_of(pes=hw["pes"], mpp=hw["mpp"], partition=partition, fmt=fmt, skip=hw["skip"], rows=rows,
                         cols=hw["pes"] // rows, cps=2, unit=hw["unit"])
            for a, b in zip(sparse_pe.sparse(work, cfg, full, act, None), sparse_pe.sparse(work, cfg, fewer, act, None)):
                assert b.cycles <= a.cycles and b.total_cycles <= a.total_cycles
                assert b.macs <= a.macs
                assert b.energy_pj["total"] <= a.energy_pj["total"] * (1 + 1e-12)


# ---------------------------------------------------------------------------------------------
# configuration and command line
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, field", [
    (dict(partition="diagonal"), "partition"),
    (dict(format="huffman"), "format"),
    (dict(pes=0), "pes"),
    (dict(macs_per_pe=-1), "macs_per_pe"),
    (dict(spatial_tile=dict(rows=3, cols=3, channels_per_step=8)), "spatial_tile.rows"),
    (dict(spatial_tile=None), "spatial_tile"),
    (dict(partition="dynamic", dynamic=None), "dynamic"),
    (dict(run_bits=None), "run_bits"),
    (dict(gate_decision=dict(cycles=-1, compare_pj=0.1)), "gate_decision.cycles"),
    (dict(skip_zero_acts="maybe"), "skip_zero_acts"),
    (dict(warp_size=32), "warp_size"),
    (dict(sram_kb=dict(ifmap=64, filter=64)), "sram_kb.ofmap"),
])
def test_bad_config_fields_name_the_field(change, field):
    data = copy.deepcopy(BASE)
    data.update(change)
    with pytest.raises(HwsimError) as exc:
        parse_config(data, "bad.yaml")
    assert exc.value.field == field and "\n" not in str(exc.value)


def test_shipped_configs_load_and_describe():
    for path in sorted((ROOT / "accel_configs").glob("sparse_pe*.yaml")):
        cfg = load_config(path)
        assert cfg.peak_macs_per_cycle() == cfg.pes * cfg.macs_per_pe
        assert cfg.partition in cfg.describe()


def test_more_pes_than_work_is_reported_as_idle():
    spec = make_layer("fc", "linear", (64, 1, 1), 10)
    r = simulate_layer(spec, cfg_of(pes=16, partition="output_channel", rows=4, cols=4),
                       act_masks=np.ones((1, 64, 1, 1), dtype=bool))
    assert r.figures.counters["idle_pe_fraction"] == pytest.approx(1 - 10 / 16)


def test_cli_runs_a_trace(tmp_path):
    trace = write_trace(tmp_path / "trace", n_images=2)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-m", "hwsim.run", "--accel", str(YAML), "--trace", str(trace),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "TOTAL" in r.stdout and "g1" in r.stdout
    header = (tmp_path / "out" / "hwsim_layers.csv").read_text().splitlines()[0]
    assert "imbalance" in header and "energy_gate_pj" in header
    code = "import sys, hwsim.models.sparse_pe; sys.exit(any(m.split('.')[0] in ('torch', 'cdg') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env).returncode == 0
