"""Depthwise and narrow grouped convs take the direct CUDA-core kernel: a hand roofline on a toy
GPU, and on the shipped A100 a MobileNet depthwise layer costs what its bytes cost, not 455x."""
import copy

import pytest

from hwsim.api import simulate_layer
from hwsim.config import load_config, parse_config
from hwsim.models.gpu import model as gpu
from hwsim.trace.errors import HwsimError
from hwsim.workload import conv_layer, lower
from tests.hwsim.models.gpu.test_gpu import GPU

DEPTHWISE = conv_layer(10, 10, 32, 32, 3, 1, 1, groups=32, name="dw")
POINTWISE = conv_layer(8, 8, 32, 64, 1, 1, 0, name="pw")


def toy(**changes):
    data = copy.deepcopy(GPU)
    data.update(cuda_core_macs_per_sm_cycle=16, **changes)
    return parse_config(data, "toy")


def test_depthwise_is_a_roofline_of_cuda_core_macs_against_compulsory_bytes():
    cfg = toy()
    work = lower(DEPTHWISE)
    g = work.gemm
    f = gpu.dense(work, cfg)
    macs = g.E * g.M * g.K * work.groups                         # per image (batch 1)
    compute = macs / (4 * 16)
    moved = (g.ifmap_footprint() * 32 + 9 * 32 + g.E * 32) * 2   # FP16 in, weights, out
    assert f.macs == macs and f.cycles == pytest.approx(compute)
    assert f.total_cycles == pytest.approx(max(compute, moved / 100) + 100)
    assert f.counters["direct_path"] == 1.0 and f.counters["tiles"] == 1.0
    assert gpu.dense(lower(POINTWISE), cfg).counters["direct_path"] == 0.0


def test_a_config_without_the_cuda_core_rate_names_the_field_for_a_depthwise_layer():
    data = copy.deepcopy(GPU)
    cfg = parse_config(data, "toy")
    gpu.dense(lower(POINTWISE), cfg)                             # no grouped conv: not needed
    with pytest.raises(HwsimError, match="cuda_core_macs_per_sm_cycle"):
        gpu.dense(lower(DEPTHWISE), cfg)


def test_mobilenet_depthwise_on_a100_costs_about_its_traffic():
    """MobileNet-V2's 112x112x96 stride-2 depthwise 3x3 (batch 32): memory-bound on the CUDA
    cores, a few microseconds per image, far below a ResNet-50 (the tile path made it ~455x)."""
    cfg = load_config("accel_configs/gpu_a100.yaml")
    spec = conv_layer(113, 113, 96, 96, 3, 2, 0, groups=96, name="dw")
    r = simulate_layer(spec, cfg)
    us_per_image = r.total_cycles / cfg.clock_mhz
    bytes_per_image = r.dram_bytes
    assert bytes_per_image / (cfg.dram.bandwidth_gb_s * 1e3) <= us_per_image <= 3 * bytes_per_image / (
        cfg.dram.bandwidth_gb_s * 1e3) + cfg.launch_us
    work = lower(spec)
    grid = gpu._grid(work, cfg)
    tile_path = gpu._figures_per_batch(grid, cfg, gpu._all_on(grid), 0)[0]
    assert tile_path.total_cycles > 50 * r.total_cycles   # one 128-wide tile column per channel
