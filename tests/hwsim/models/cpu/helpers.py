"""A small CPU config for the cpu model's tests (round figures, not a real host)."""
from __future__ import annotations

import copy

from hwsim.config import parse_config

CPU = dict(
    name="cpu_test", model="cpu", clock_mhz=2000, word_bytes=dict(ifmap=4, filter=4, ofmap=4),
    host=dict(cpu_model="test", logical_cpus=2, torch_version="0", date="2026-01-01"),
    cores=2, calibrated_threads=2, threads=2, simd_fmas_per_core_cycle=32, batch=1, op_us=5.0,
    conv=dict(peak_gflops=100.0, m_half=64.0, n_half=16.0, k_half=32.0),
    gemm=dict(peak_gflops=80.0, m_half=32.0, n_half=16.0, k_half=32.0),
    gather=dict(gb_s=4.0, row_ns=10.0, far_gb_s=2.0), scatter=dict(gb_s=3.0, row_ns=15.0, far_gb_s=1.0),
    scatter_channels_last=dict(gb_s=6.0, row_ns=5.0, far_gb_s=3.0),
    memory=dict(cache_kb=1024, cache_gb_s=40.0, llc_kb=8192, llc_gb_s=20.0, dram_gb_s=10.0),
    ops=dict(decide=5, spatial=11, gather=28, union=7, per_channel_block=11, dense_masked=9, tile_conv=45,
             channel_union=6, per_image=4),
    energy=dict(source="Horowitz ISSCC 2014 (45 nm), assumption", process_nm=45, mac_pj=4.6,
                dram_pj_per_byte=160.0, static_w=10.0),
)


def cpu_dict(**changes):
    data = copy.deepcopy(CPU)
    data.update(changes)
    return data


def cpu_config(**changes):
    return parse_config(cpu_dict(**changes), "cpu_test")
