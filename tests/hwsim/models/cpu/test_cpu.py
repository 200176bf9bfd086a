"""The cpu model: its limits (all on, all off, density), its paths and its config's one-line errors."""
from __future__ import annotations

import numpy as np
import pytest

from hwsim.api import simulate_network
from hwsim.config import load_config, parse_config
from hwsim.models.cpu import model
from hwsim.trace import GateGrid, make_layer
from hwsim.trace.errors import HwsimError
from hwsim.workload import lower
from tests.hwsim.helpers import ROOT
from tests.hwsim.models.cpu.helpers import cpu_config, cpu_dict

STRUCTURES = {"pixel": GateGrid(G=2, S=32, b=1), "block2": GateGrid(G=2, S=32, b=2),
              "channel_block": GateGrid(G=2, S=8, b=2), "unstructured": GateGrid(G=2, S=1, b=1),
              "channel_gate": GateGrid(G=1, S=1, b=1, base_channels=0)}


def _layer(gate, c=32, size=16):
    return lower(make_layer("g", "conv", (c, size, size), c, 3, 1, 1, gate=gate))


def _masks(work, fraction, rng=None):
    """Decisions on the layer's grid with ``fraction`` of them on (a nested family as it grows),
    expanded to full resolution; channel gates get whole channels."""
    spec = work.spec
    n, cb, hb, wb = spec.gate_grid(2)
    if spec.gate.base_channels == 0:
        hb = wb = 1
    order = np.random.default_rng(0).permutation(n * cb * hb * wb)
    flat = np.zeros(order.size, dtype=bool)
    flat[order[:int(round(fraction * order.size))]] = True
    grid = flat.reshape(n, cb, hb, wb)
    c, h, w = spec.out_shape
    S, b = spec.gate.S, spec.gate.b
    full = grid.repeat(S, 1)[:, :c]
    if spec.gate.base_channels == 0:
        return np.broadcast_to(full, (n, c, h, w)).copy()
    return full.repeat(b, 2).repeat(b, 3)[:, :, :h, :w]


def _time(work, cfg, masks, act=None):
    return model.sparse(work, cfg, masks, act)[0].total_cycles


@pytest.mark.parametrize("name", STRUCTURES)
def test_all_on_is_never_faster_than_dense(name):
    cfg, work = cpu_config(), _layer(STRUCTURES[name])
    assert _time(work, cfg, _masks(work, 1.0)) >= model.dense(work, cfg).total_cycles


@pytest.mark.parametrize("name", [n for n in STRUCTURES if n != "channel_gate"])
def test_all_off_costs_the_base_conv_decisions_and_calls_only(name):
    gate = STRUCTURES[name]
    cfg = cpu_config(path="spatial_gather" if gate.S == 32 else "union_gather")
    work = _layer(gate)
    f = model.sparse(work, cfg, _masks(work, 0.0))[0]
    c = f.counters
    assert c["gather_us"] == c["gemm_us"] == c["scatter_us"] == 0 and c["rows"] == 0
    base_only = model.dense(lower(make_layer("b", "conv", (16, 16, 16), 32, 3, 1, 1)), cfg)
    assert c["base_us"] == pytest.approx(base_only.counters["base_us"])
    calls = cfg.ops.decide + cfg.ops.spatial + (cfg.ops.union if gate.S < 32 else 0)
    pooling = cfg.op_us + 32 * 256 * 4 / (cfg.memory.cache_gb_s * 1e3)     # one pass over the base output
    assert c["overhead_us"] == pytest.approx(calls * cfg.op_us + pooling)
    assert f.total_cycles == pytest.approx((c["base_us"] + c["overhead_us"]) * cfg.clock_mhz)


GATHER = {"pixel": "spatial_gather", "block2": "spatial_gather", "channel_block": "channel_block_gather",
          "unstructured": "union_gather", "channel_gate": "channel_union"}


@pytest.mark.parametrize("name", STRUCTURES)
def test_time_grows_with_density(name):
    work = _layer(STRUCTURES[name])
    densities = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
    for cfg in (cpu_config(path=GATHER[name]), cpu_config()):      # the gather path, and auto's choice
        times = [_time(work, cfg, _masks(work, d)) for d in densities]
        assert all(a <= b for a, b in zip(times, times[1:])), times
    forced = [_time(work, cpu_config(path=GATHER[name]), _masks(work, d)) for d in densities]
    assert forced[0] < forced[-1]


@pytest.mark.parametrize("name,paths", [
    ("pixel", {"spatial_gather", "dense_masked"}), ("block2", {"spatial_gather", "dense_masked", "tile_conv"}),
    ("channel_block", {"union_gather", "channel_block_gather", "dense_masked"}),
    ("unstructured", {"union_gather", "channel_block_gather", "dense_masked"}),
    ("channel_gate", {"channel_union", "channel_slice", "dense_masked"}),
])
def test_auto_takes_the_cheapest_of_the_executors_candidates(name, paths):
    work = _layer(STRUCTURES[name])
    for d in (0.05, 0.5, 0.95):
        m = _masks(work, d)
        forced = {}
        for p in paths:
            f = model.sparse(work, cpu_config(path=p, batch=2), m)[0]
            assert model.PATHS[int(f.counters["path"])] == p
            forced[p] = f.total_cycles
        auto = model.sparse(work, cpu_config(batch=2), m)[0]
        assert auto.total_cycles == pytest.approx(min(forced.values()))
        assert model.PATHS[int(auto.counters["path"])] in paths


def test_channels_last_scatters_with_its_own_rates():
    work = _layer(STRUCTURES["pixel"])
    m = _masks(work, 0.5)
    nchw = model.sparse(work, cpu_config(path="spatial_gather"), m)[0].counters["scatter_us"]
    cl = model.sparse(work, cpu_config(path="spatial_gather", channels_last=True), m)[0].counters["scatter_us"]
    assert cl < nchw                       # the helper config's channels_last rates are the faster ones


def test_long_block_loops_are_not_candidates():
    work = _layer(STRUCTURES["unstructured"])                     # 32 channel blocks
    f = model.sparse(work, cpu_config(path="channel_block_gather", max_block_loop=16), _masks(work, 0.5))[0]
    assert model.PATHS[int(f.counters["path"])] != "channel_block_gather"


def test_channel_gates_skip_structurally_zero_input_channels():
    cfg, work = cpu_config(path="channel_union"), _layer(STRUCTURES["channel_gate"])
    m = _masks(work, 0.5)
    act = np.ones((1, 32, 16, 16), dtype=bool)
    half = act.copy()
    half[:, 16:] = False
    assert _time(work, cfg, m, half) < _time(work, cfg, m, act) == _time(work, cfg, m)


def test_a_batch_replicates_a_short_trace():
    work = _layer(STRUCTURES["block2"])
    m = _masks(work, 0.5)[:1]
    one = model.sparse(work, cpu_config(batch=1), m)[0]
    four = model.sparse(work, cpu_config(batch=4), m)[0]
    assert four.counters["rows"] == pytest.approx(one.counters["rows"])          # per image
    assert four.counters["batch_us"] < 4 * one.counters["batch_us"]              # call costs amortised


def test_threads_scale_compute_not_bandwidth():
    work = _layer(None)
    one, two = cpu_config(threads=1, calibrated_threads=1), cpu_config(threads=2, calibrated_threads=1)
    assert model.dense(work, two).cycles == pytest.approx(model.dense(work, one).cycles / 2)


@pytest.mark.parametrize("changes,field", [
    ({"threads": 0}, "threads"), ({"batch": True}, "batch"), ({"op_us": -1.0}, "op_us"),
    ({"path": "best"}, "path"), ({"surprise": 1}, "surprise"), ({"max_block_loop": 0}, "max_block_loop"),
    ({"memory": {"cache_kb": 1024, "cache_gb_s": 40.0, "llc_kb": 4096, "llc_gb_s": 10.0, "dram_gb_s": 20.0}},
     "memory.dram_gb_s"),
    ({"memory": {"cache_kb": 8192, "cache_gb_s": 40.0, "llc_kb": 4096, "llc_gb_s": 10.0, "dram_gb_s": 5.0}},
     "memory.cache_kb"),
    ({"gemm": {"peak_gflops": 0, "m_half": 1, "n_half": 1, "k_half": 1}}, "gemm.peak_gflops"),
])
def test_config_mistakes_are_one_line_errors(changes, field):
    with pytest.raises(HwsimError) as exc:
        parse_config(cpu_dict(**changes), "cpu.yaml")
    assert exc.value.field == field and "\n" not in exc.value.one_line()


def test_the_shipped_host_config_runs_a_network():
    cfg = load_config(ROOT / "accel_configs/cpu_host.yaml")
    run = simulate_network("resnet18_cifar", cfg)
    t = run.totals()
    assert t["speedup"] == 1.0 and t["time_us"] > 0 and cfg.host.torch_version
