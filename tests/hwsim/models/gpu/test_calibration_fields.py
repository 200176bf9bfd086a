"""GPU model fields for absolute numbers: sustained clock, tensor efficiency, tactics (tile and
split-K choice), the smooth L2 model; their defaults change nothing, bad values name the field."""
import dataclasses

import numpy as np
import pytest

from hwsim.models.gpu import model as gpu
from hwsim.trace import GateGrid, make_layer
from hwsim.trace.errors import HwsimError
from hwsim.workload import lower
from tests.hwsim.models.gpu.test_gpu import HAND, gpu_cfg

TILE16 = {"m": 16, "n": 16, "k": 16}


def _same(a, b):
    return dataclasses.asdict(a) == dataclasses.asdict(b)


def test_explicit_defaults_equal_absent_fields():
    plain = gpu_cfg()
    explicit = gpu_cfg(sustained_clock_mhz=1000, tensor_efficiency=1.0, l2={"model": "step"}, tactics=None)
    w = lower(HAND)
    assert _same(gpu.dense(w, plain), gpu.dense(w, explicit))
    half = np.random.default_rng(0).random((3, *HAND.out_shape)) < 0.5
    for mode in ("predicated", "compact"):
        a = gpu.sparse(w, gpu_cfg(sparse={"mode": mode}), half)
        b = gpu.sparse(w, gpu_cfg(sparse={"mode": mode}, sustained_clock_mhz=1000, tensor_efficiency=1.0), half)
        assert all(_same(x, y) for x, y in zip(a, b))


def test_tensor_efficiency_and_sustained_clock_by_hand():
    w = lower(HAND)     # 2 waves of tiles of 2 k-steps x 64 cycles + 10 latency (test_gpu.py)
    e = gpu.dense(w, gpu_cfg(tensor_efficiency=0.5))
    assert e.cycles == 2 * (2 * 64 / 0.5 + 10)
    # SMs at half the clock: per 1 GHz cycle half the MACs, half the L2 bytes, latency twice as long;
    # DRAM (10240 B at 100 B/cycle) and the 100-cycle launch are wall-clock figures and do not move
    s = gpu.dense(w, gpu_cfg(sustained_clock_mhz=500))
    assert s.cycles == 2 * (2 * 64 * 2 + 20) and s.total_cycles == s.cycles + 100
    assert s.traffic_bytes == gpu.dense(w, gpu_cfg()).traffic_bytes


def test_split_k_cuts_a_long_reduction_and_tactics_never_slow_a_layer():
    fc = make_layer("fc", "linear", (1024, 1, 1), 16)   # 1 x 16 GEMM, K = 1024: one tile of 64 k-steps
    one = gpu.dense(lower(fc), gpu_cfg())
    assert one.counters["tiles"] == 1 and one.cycles == 64 * 64 + 10
    split = gpu.dense(lower(fc), gpu_cfg(tactics={"tiles": [TILE16], "split_k": [2, 4]}))
    # 4 slices of 16 k-steps on the 4 SMs; FP32 partials (2 x 16 x 16 x 4 B) stay under the compute time
    assert split.counters["tiles"] == 4 and split.cycles == 16 * 64 + 10
    assert split.macs == one.macs and split.traffic_bytes["l2_psum"] == 4 * 2 * 16 * 16 * 4
    tactics = {"tiles": [{"m": 32, "n": 16, "k": 16}, {"m": 16, "n": 32, "k": 32}], "split_k": [1, 2, 8]}
    for spec in (fc, HAND, make_layer("c", "conv", (24, 9, 7), 40, 3, 2, 1), make_layer("d", "conv", (64, 16, 16), 64, 1)):
        for batch in (1, 3):
            base = gpu.dense(lower(spec), gpu_cfg(batch=batch))
            tuned = gpu.dense(lower(spec), gpu_cfg(batch=batch, tactics=tactics))
            assert tuned.total_cycles <= base.total_cycles and tuned.macs == base.macs


def test_gated_layers_keep_one_tile_choice_and_no_split():
    cfg = gpu_cfg(tactics={"tiles": [{"m": 32, "n": 32, "k": 16}], "split_k": [2, 4]})
    w = lower(HAND)
    d = gpu.dense(w, cfg)
    assert d.counters["tiles"] in (8, 2)            # 4 x 2 tiles of 16 x 16 or 2 x 1 of 32 x 32, never split
    on = np.ones((2, *HAND.out_shape), dtype=bool)
    assert all(_same(f, d) for f in gpu.sparse(w, cfg, on))     # predicated all-on is still dense exactly
    assert "thread-block tile" in gpu.granularity(w, cfg)


def test_smooth_l2_equals_step_when_the_layer_fits_and_has_no_cliff():
    w = lower(HAND)      # ifmap 4096 B, filter 2048 B, ofmap 4096 B: 10240 B; 2 column tiles
    assert _same(gpu.dense(w, gpu_cfg(l2={"model": "smooth"})), gpu.dense(w, gpu_cfg()))
    mb = 4096 / 2**20
    step = gpu.dense(w, gpu_cfg(l2={"mb": mb})).traffic_bytes["dram_ifmap_read"]
    smooth = gpu.dense(w, gpu_cfg(l2={"mb": mb, "model": "smooth"}))
    # reuse distance 4096 + (2048 + 4096) / 2 = 7168 B; hit 4096 / 7168; one extra pass of misses
    hit = 4096 / 7168
    assert step == 2 * 4096
    assert smooth.traffic_bytes["dram_ifmap_read"] == pytest.approx(4096 * (1 + (1 - hit)))
    assert smooth.counters["l2_fits"] == pytest.approx(hit)
    reads = {m: [gpu.dense(w, gpu_cfg(l2={"mb": kb * 1024 / 2**20, "model": m})).traffic_bytes["dram_ifmap_read"]
                 for kb in np.linspace(2, 12, 41)] for m in ("step", "smooth")}
    for m, r in reads.items():
        assert all(a >= b for a, b in zip(r, r[1:])), m          # more L2 never reads more
    jumps = {m: max(a - b for a, b in zip(r, r[1:])) for m, r in reads.items()}
    assert jumps["step"] == 4096 and jumps["smooth"] < 400


@pytest.mark.parametrize("changes,field", [
    ({"tensor_efficiency": 0}, "tensor_efficiency"),
    ({"tensor_efficiency": 1.5}, "tensor_efficiency"),
    ({"sustained_clock_mhz": 0}, "sustained_clock_mhz"),
    ({"sustained_clock_mhz": 1500}, "sustained_clock_mhz"),
    ({"l2": {"model": "lru"}}, "l2.model"),
    ({"tactics": {"tiles": []}}, "tactics.tiles"),
    ({"tactics": {"tiles": [{"m": 16, "n": 16, "k": 8}]}}, "tactics.tiles.0.k"),
    ({"tactics": {"tiles": [{"m": 512, "n": 512, "k": 64}]}}, "tactics.tiles.0"),
    ({"tactics": {"tiles": [TILE16], "split_k": [0]}}, "tactics.split_k"),
    ({"tactics": {"tiles": [TILE16], "split_k": [65]}}, "tactics.split_k"),
    ({"tactics": {"tiles": [TILE16], "stages": 2}}, "tactics.stages"),
])
def test_bad_new_fields_name_the_field(changes, field):
    with pytest.raises(HwsimError) as exc:
        gpu_cfg(**changes)
    assert exc.value.field == field and exc.value.source == "toy_gpu"
    assert "\n" not in str(exc.value)
