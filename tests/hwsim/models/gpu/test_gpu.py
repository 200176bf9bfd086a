"""GPU model (hwsim.models.gpu): hand-computed rooflines, gate/tile alignment, monotonicity, config errors."""
import copy
import dataclasses
import json
import math

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsim.models.gpu import model as gpu
from hwsim.api import simulate_layer
from hwsim.config import load_config, parse_config
from hwsim.trace.errors import HwsimError
from hwsim.trace import GateGrid, make_layer
from hwsim.workload import lower
from tests.hwsim.helpers import ROOT, write_trace
from tests.hwsim.test_cli import run as run_cli

# A toy GPU whose figures are easy to follow by hand: 4 SMs of 64 MACs/cycle, 1 GHz, 100 B/cycle
# of DRAM, 512 B/cycle of L2, 100-cycle launches, 10-cycle tile latency.
GPU = dict(
    name="toy_gpu", model="gpu", clock_mhz=1000, sms=4, tensor_macs_per_sm_cycle=64, smem_kb_per_sm=64,
    tile=dict(m=16, n=16, k=16), stages=2, tiles_per_sm=1, word_bytes=dict(ifmap=2, filter=2, ofmap=2),
    l2=dict(mb=1, bytes_per_cycle=512), dram=dict(bandwidth_gb_s=100), launch_us=0.1, tile_latency_cycles=10,
    batch=1, sparse=dict(mode="predicated", index_bytes=4, psum_bytes=4),
    energy=dict(source="test figures", process_nm=7, mac_pj=1.0, smem_pj_per_byte=0.5, l2_pj_per_byte=2.0,
                dram_pj_per_bit=4.0, static_w=10.0),
)


def gpu_cfg(**changes):
    data = copy.deepcopy(GPU)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_config(data, "toy_gpu")


# 1x1 conv, 32 -> 32 channels on 8x8, base = 16 channels: K = 32 (2 k-steps), K_base = 16 (1 k-step);
# GEMM 64 px x 32 ch = 4 x 2 tiles of 16 x 16 on 4 slots = 2 waves. One decision per 16 ch x 4x4 px.
HAND = make_layer("hand", "conv", (32, 8, 8), 32, 1, 1, 0, gate=GateGrid(G=2, S=16, b=4))


def _figs(spec, cfg, mask):
    return gpu.sparse(lower(spec), cfg, mask)


def _same(a, b):
    return dataclasses.asdict(a) == dataclasses.asdict(b)


def test_hand_roofline_compute_memory_and_dram_bound():
    w = lower(HAND)
    # compute-bound: tile = it * 16*16*16 / 64 = 64 it cycles vs (it*16*(16+16)*2 + 16*16*2) B / (512/4) B/cyc
    d = gpu.dense(w, gpu_cfg())
    assert d.cycles == 2 * (2 * 64 + 10)
    assert d.total_cycles == 2 * (2 * 64 + 10) + 100          # DRAM 10240 B / 100 B/cyc = 102 < 276
    assert d.macs == HAND.dense_macs and d.counters["tile_compute_bound"] == 1
    assert d.traffic_bytes["dram_ifmap_read"] == 32 * 64 * 2 and d.traffic_bytes["dram_filter_read"] == 32 * 32 * 2
    # L2-bound tiles: 16 B/cycle of L2 -> 4 B/cycle per SM: (2*1024 + 512) / 4 = 640 cycles a tile
    m = gpu.dense(w, gpu_cfg(l2={"bytes_per_cycle": 16}))
    assert m.cycles == 2 * (640 + 10) and m.counters["tile_compute_bound"] == 0
    # DRAM-bound kernel: 1 B/cycle -> 10240 cycles of transfer exceed 276 cycles of tiles
    r = gpu.dense(w, gpu_cfg(dram={"bandwidth_gb_s": 1}))
    assert r.cycles == 276 and r.total_cycles == 10240 + 100 and r.counters["dram_bound"] == 1
    assert d.energy_pj["static"] == pytest.approx(10.0 * 376e-9 * 1e12)
    assert d.energy_pj["mac"] == 8 * 2 * 16 * 16 * 16 * 1.0


def test_all_gates_on_predicated_equals_dense_exactly():
    rng = np.random.default_rng(0)
    for spec in (HAND, make_layer("g", "conv", (12, 9, 7), 20, 3, 2, 1, gate=GateGrid(G=4, S=3, b=2))):
        for cfg in (gpu_cfg(), gpu_cfg(tile={"m": 32, "n": 8, "k": 32}, batch=3, tiles_per_sm=2, sms=3)):
            d = gpu.dense(lower(spec), cfg)
            on = np.ones((5, *spec.out_shape), dtype=bool)
            assert all(_same(f, d) for f in _figs(spec, cfg, on))
            r = simulate_layer(spec, cfg, gate_masks=on)
            assert r.speedup == 1.0 and r.total_cycles == d.total_cycles
            dense_mode = gpu_cfg(sparse={"mode": "dense"})
            half = rng.random((2, *spec.out_shape)) < 0.5
            assert all(_same(f, gpu.dense(lower(spec), dense_mode)) for f in _figs(spec, dense_mode, half))


def test_all_gates_off_leaves_base_plus_overheads():
    off = np.zeros((1, *HAND.out_shape), dtype=bool)
    p = _figs(HAND, gpu_cfg(), off)[0]
    assert p.cycles == 2 * (64 + 10) and p.total_cycles == 148 + 100
    assert p.macs == HAND.base_macs() and p.counters["tiles_active"] == 0
    assert p.traffic_bytes["dram_ifmap_read"] == 16 * 64 * 2 and p.traffic_bytes["dram_filter_read"] == 16 * 32 * 2
    c = _figs(HAND, gpu_cfg(sparse={"mode": "compact"}), off)[0]
    # base kernel 148 + gather (8 decisions = 1 byte of mask at 100 B/cycle) + empty cond kernel, 3 launches
    assert c.total_cycles == pytest.approx(148 + 0.01 + 3 * 100)
    assert c.macs == HAND.base_macs() and c.traffic_bytes["dram_mask_read"] == 1.0


def test_compact_all_on_is_dense_plus_compaction_overheads():
    """Compact, every gate on: the base and conditional k-steps run as two kernels (one extra
    pipeline latency per tile, here 2 waves x 10), plus the gather kernel (mask + 8 indices) and
    2 extra launches; scatter-add traffic stays under the compute roofline here."""
    on = np.ones((1, *HAND.out_shape), dtype=bool)
    d = gpu.dense(lower(HAND), gpu_cfg())
    c = _figs(HAND, gpu_cfg(sparse={"mode": "compact"}), on)[0]
    gather = (1 + 8 * 4) / 100
    assert c.total_cycles == pytest.approx(d.total_cycles + 2 * 100 + 2 * 10 + gather)
    assert c.macs == d.macs and c.counters["kernels"] == 3
    assert c.traffic_bytes["l2_psum"] == 8 * 2 * 16 * 16 * 4 and c.traffic_bytes["l2_index"] == 2 * 8 * 4


def _realised(spec, cfg, masks):
    return simulate_layer(spec, cfg, gate_masks=masks)


def test_tile_aligned_gates_realise_the_flops_cut_and_scattered_ones_do_not():
    cfg = gpu_cfg(tile={"m": 64, "n": 16, "k": 16}, batch=2, launch_us=0.0)
    # 16x16 images: one b=16 block covers 4 row-major tiles of 64 px exactly; S = 16 = tile.n
    aligned = make_layer("a", "conv", (64, 16, 16), 64, 3, 1, 1, gate=GateGrid(G=4, S=16, b=16))
    scattered = make_layer("s", "conv", (64, 16, 16), 64, 3, 1, 1, gate=GateGrid(G=4, S=1, b=1))
    rng = np.random.default_rng(1)
    from hwsim.trace import expand_gate_blocks
    blocks = rng.random(aligned.gate_grid(8)) < 0.5
    am = expand_gate_blocks(blocks, aligned)
    sm = rng.random((8, *scattered.out_shape)) < am.mean()
    ra, rs = _realised(aligned, cfg, am), _realised(scattered, cfg, sm)
    assert ra.flops_reduction > 1.5 and abs(ra.flops_reduction - rs.flops_reduction) < 0.05
    assert ra.zero_work_removed > 0.85, ra.zero_work_removed
    assert rs.zero_work_removed < 0.02 and rs.speedup == pytest.approx(1.0)
    assert "thread-block tile 64 px x 16 ch" in ra.granularity
    c = _realised(aligned, cfg.with_overrides(sparse={"mode": "compact", "index_bytes": 4, "psum_bytes": 4}), am)
    assert c.zero_work_removed > 0.9


@st.composite
def cases(draw):
    c_in = draw(st.integers(2, 24))
    c_out = draw(st.integers(1, 40))
    k = draw(st.sampled_from([1, 3]))
    h = draw(st.integers(max(k, 2), 10))
    gate = GateGrid(G=draw(st.sampled_from([2, 4])) if c_in >= 4 else 2, S=draw(st.integers(1, c_out)),
                    b=draw(st.integers(1, 3)))
    spec = make_layer("l", "conv", (c_in, h, h), c_out, k, draw(st.sampled_from([1, 2])), k // 2, gate=gate)
    tile = draw(st.sampled_from([(16, 8, 16), (32, 16, 16), (16, 32, 32), (64, 8, 16)]))
    cfg = dict(tile=dict(zip("mnk", tile)), batch=draw(st.integers(1, 3)), sms=draw(st.sampled_from([1, 2, 5])),
               tiles_per_sm=draw(st.sampled_from([1, 2])), l2={"bytes_per_cycle": draw(st.sampled_from([16, 512]))})
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    mask = rng.random((3, *spec.out_shape)) < draw(st.floats(0.0, 1.0))
    sub = mask & (rng.random(mask.shape) < draw(st.floats(0.0, 1.0)))
    return spec, cfg, mask, sub


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_cycles_and_energy_never_rise_as_gates_turn_off(case):
    spec, changes, mask, sub = case
    for mode in ("predicated", "compact"):
        cfg = gpu_cfg(sparse={"mode": mode}, **changes)
        for full, fewer in zip(_figs(spec, cfg, mask), _figs(spec, cfg, sub)):
            assert fewer.cycles <= full.cycles * (1 + 1e-12)
            assert fewer.total_cycles <= full.total_cycles * (1 + 1e-12)
            assert fewer.energy_pj["total"] <= full.energy_pj["total"] * (1 + 1e-12)
            assert fewer.macs <= full.macs and fewer.dram_bytes <= full.dram_bytes * (1 + 1e-12)
        if mode == "predicated":
            d = gpu.dense(lower(spec), cfg)
            assert all(f.total_cycles <= d.total_cycles * (1 + 1e-12) for f in _figs(spec, cfg, mask))


def test_batches_share_a_launch_and_wrap_around():
    cfg = gpu_cfg(batch=2)
    rng = np.random.default_rng(3)
    m = rng.random((3, *HAND.out_shape)) < 0.3
    f = _figs(HAND, cfg, m)
    assert f[0] is f[1] and f[2] is not f[0]
    # the last launch is filled up with image 0: same as running images (2, 0) together
    again = _figs(HAND, cfg, m[[2, 0]])
    assert _same(f[2], again[0])


def test_more_sms_than_tiles_is_reported_not_rejected():
    fc = make_layer("fc", "linear", (512, 1, 1), 10)
    d = gpu.dense(lower(fc), load_config(ROOT / "accel_configs/gpu_a100.yaml"))
    assert d.counters["tiles"] == 1 and d.counters["idle_sm_fraction"] == pytest.approx(107 / 108)


@pytest.mark.parametrize("changes,field", [
    ({"tile": {"m": 20}}, "tile.m"),
    ({"tile": {"k": 8}}, "tile.k"),
    ({"tiles_per_sm": 8, "smem_kb_per_sm": 15}, "tiles_per_sm"),
    ({"sparse": {"mode": "compact", "index_bytes": None}}, "sparse.index_bytes"),
    ({"sparse": {"mode": "compact", "psum_bytes": None}}, "sparse.psum_bytes"),
    ({"sparse": {"mode": "sparse"}}, "sparse.mode"),
    ({"sms": 0}, "sms"),
    ({"launch_us": -1}, "launch_us"),
    ({"l2": {"mb": 0}}, "l2.mb"),
    ({"energy": {"mac_pj": None}}, "energy.mac_pj"),
    ({"warp_size": 32}, "warp_size"),
])
def test_bad_fields_name_the_field(changes, field):
    with pytest.raises(HwsimError) as exc:
        gpu_cfg(**changes)
    assert exc.value.field == field and exc.value.source == "toy_gpu"
    assert "\n" not in str(exc.value)


def test_shipped_configs_and_cli(tmp_path):
    for name in ("gpu_a100", "gpu_h100"):
        cfg = load_config(ROOT / f"accel_configs/{name}.yaml")
        assert cfg.model == "gpu" and cfg.peak_macs_per_cycle() > 0
    trace = write_trace(tmp_path / "trace", n_images=3)
    r = run_cli("--accel", "accel_configs/gpu_a100.yaml", "--trace", str(trace), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert "TOTAL" in r.stdout and "thread-block" not in r.stdout
    doc = json.loads((tmp_path / "out" / "hwsim.json").read_text())
    assert doc["model"] == "gpu" and doc["totals"]["speedup"] >= 1.0
    assert "thread-block tile 128 px x 128 ch (predicated k-loop)" in {lay["granularity"] for lay in doc["layers"]}
    bad = tmp_path / "bad.yaml"
    data = yaml.safe_load(open(ROOT / "accel_configs/gpu_a100.yaml"))
    data["tile"]["n"] = 12
    bad.write_text(yaml.safe_dump(data))
    e = run_cli("--accel", str(bad), "--trace", str(trace))
    assert e.returncode == 2 and "tile.n" in e.stderr and len(e.stderr.strip().splitlines()) == 1
    assert math.isfinite(doc["totals"]["energy_pj"])
