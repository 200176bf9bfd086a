"""Depthwise and narrow grouped convs on a GPU: the direct CUDA-core kernel libraries use.

The implicit-GEMM path maps each group to its own column of thread-block tiles; a depthwise conv
(one output channel per group, a 9-element reduction) would then fill a 128 x 128 x 32 tile with
one useful column and a third of a k-step: about 455x the work of the layer on the tensor cores
(one MobileNet depthwise layer costing half of a whole ResNet-50). cuDNN and PyTorch run such
layers with direct convolution kernels on the CUDA cores instead, which are memory-bound at
these arithmetic intensities. Here: a layer whose groups each have at most half a tile's width
of output channels and a reduction of at most four k-steps runs as one kernel whose time is the roofline of its MACs at the CUDA-core
FMA rate (``cuda_core_macs_per_sm_cycle``, from the vendor's non-tensor FP16 peak) against its
compulsory DRAM traffic, plus a launch. Only dense layers take it: the trace schema refuses
gated grouped convs. docs/hwsim-gpu.md.
"""
from __future__ import annotations

from hwsim import costs
from hwsim.figures import Figures
from hwsim.models.gpu.config import GPUConfig
from hwsim.trace.errors import HwsimError
from hwsim.workload import LayerWorkload


def uses_direct_path(work: LayerWorkload, cfg: GPUConfig) -> bool:
    """Grouped convs whose per-group GEMM is narrower than half a tile and whose reduction is a
    few k-steps (depthwise k x k up to 11 x 11 among them); per-head attention GEMMs, whose
    reduction runs over the tokens, stay batched GEMMs on the tensor cores."""
    return work.groups > 1 and work.gemm.M * 2 <= cfg.tile.n and work.gemm.K <= 4 * cfg.tile.k


def direct_figures(work: LayerWorkload, cfg: GPUConfig, counter_keys: tuple[str, ...]) -> Figures:
    """Per-image figures of one batch of ``cfg.batch`` images on the direct kernel."""
    if cfg.cuda_core_macs_per_sm_cycle is None:
        raise HwsimError(cfg.name, "cuda_core_macs_per_sm_cycle",
                         f"needed for the grouped conv {work.spec.name} (depthwise runs on CUDA cores); "
                         "set it from the GPU's non-tensor FP16 peak")
    g, wb, B = work.gemm, cfg.word_bytes, cfg.batch
    macs = float(B * g.E * g.M * g.K * work.groups)
    compute = macs / (cfg.sms * cfg.cuda_core_macs_per_sm_cycle * cfg.clock_scale())
    dram = {"dram_ifmap_read": float(B * g.ifmap_footprint() * work.groups * wb.ifmap),
            "dram_filter_read": float(g.K * g.M * work.groups * wb.filter),
            "dram_ofmap_write": float(B * g.E * g.M * work.groups * wb.ofmap), "dram_mask_read": 0.0}
    moved = sum(dram.values())
    bpc = cfg.dram.bandwidth_gb_s * 1e3 / cfg.clock_mhz
    total = costs.roofline(compute, moved, bpc) + cfg.launch_us * cfg.clock_mhz
    l2 = {"l2_ofmap_write": dram["dram_ofmap_write"], "l2_psum": 0.0, "l2_index": 0.0,
          "l2_ifmap_read": dram["dram_ifmap_read"], "l2_filter_read": dram["dram_filter_read"]}
    e = cfg.energy
    energy = {"mac": macs * e.mac_pj, "smem": 0.0, "l2": sum(l2.values()) * e.l2_pj_per_byte,
              "dram": moved * 8 * e.dram_pj_per_bit, "static": e.static_w * total / cfg.clock_mhz * 1e6}
    energy["total"] = sum(energy.values())
    counters = {key: 0.0 for key in counter_keys}
    counters.update(tiles=1.0, tiles_active=1.0, waves=1.0, resident_per_sm=1.0, kernels=1.0,
                    dram_bound=float(moved / bpc > compute), direct_path=1.0)
    return Figures(cycles=compute / B, total_cycles=total / B, macs=macs / B,
                   energy_pj={k: v / B for k, v in energy.items()},
                   traffic_bytes={k: v / B for k, v in {**dram, **l2}.items()}, counters=counters,
                   skip_units=1.0, units_run=1.0)
