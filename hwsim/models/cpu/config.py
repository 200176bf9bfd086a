"""Configuration of the CPU model (``model: cpu``): the host CPU running torch, described by the
figures a calibration measures (``python -m cdg.calibrate_cpu``). Every field: docs/hwsim-cpu.md.

The model predicts wall-clock time, so rates are effective (what torch reaches on this host at
``calibrated_threads``), not datasheet peaks; ``simd_fmas_per_core_cycle`` is only the peak that
utilisation is reported against.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from hwsim.models.base import AccelConfig, StrictModel
from hwsim.trace.errors import HwsimError


class Throughput(StrictModel):
    """Time of a GEMM-shaped op of M rows, N columns and reduction K (an implicit GEMM for conv2d):
    ``op_us + 2 M N K / (peak_gflops e(M) e(N) e(K))`` with ``e(x) = x / (x + x_half)``, the
    saturation of the vector units and cores by each dimension (fitted to micro-benchmarks)."""

    peak_gflops: float = Field(gt=0)
    m_half: float = Field(ge=0)
    n_half: float = Field(ge=0)
    k_half: float = Field(ge=0)


class RowCopy(StrictModel):
    """Indexed row copies (``index_select`` gather, ``index_put_`` scatter-add) of ``rows`` rows of
    ``row_bytes`` bytes each: ``op_us + rows * row_ns + rows * row_bytes / bw``, ``bw`` = ``gb_s``
    while the indexed tensor (gather source, scatter destination) fits ``memory.cache_kb``, else
    ``far_gb_s`` (random rows of a large tensor miss the cache)."""

    gb_s: float = Field(gt=0)
    row_ns: float = Field(ge=0)
    far_gb_s: float = Field(gt=0)


class Memory(StrictModel):
    """Streaming bandwidth by where an op's operands fit: the core's cache, the last-level cache
    (the share of it one job can count on), or DRAM."""

    cache_kb: float = Field(gt=0, description="cache one op's operands stay in (the core's level 2, by the calibration)")
    cache_gb_s: float = Field(gt=0, description="streaming copy bandwidth of a tensor that fits in cache_kb")
    llc_kb: float = Field(gt=0, description="last-level cache share (level 3, capped by the calibration)")
    llc_gb_s: float = Field(gt=0, description="streaming copy bandwidth of a tensor that fits in llc_kb")
    dram_gb_s: float = Field(gt=0, description="streaming copy bandwidth of a larger tensor")


class OpCounts(StrictModel):
    """torch calls the executor issues besides the priced ones (index arithmetic, views, nonzero,
    the decision's pooling and comparisons): each costs ``op_us``. A property of the executor's
    code, counted from it, not fitted."""

    decide: int = Field(ge=0)              # a layer's gate decisions
    spatial: int = Field(ge=0)             # every gather path: the active-pixel list
    gather: int = Field(ge=0)              # ... where a pixel is on: patch index and scatter index
    union: int = Field(ge=0)               # union_gather / channel_block_gather: beyond spatial's
    per_channel_block: int = Field(ge=0)   # channel_block_gather: each block with a pixel on
    dense_masked: int = Field(ge=0)
    tile_conv: int = Field(ge=0)           # tile_conv: tile index arithmetic, views, valid-pixel crop
    channel_union: int = Field(ge=0)       # channel gates: one conv over the batch's kept channels
    per_image: int = Field(ge=0)           # channel_slice: each image's own conv


class CPUEnergy(StrictModel):
    source: str = Field(min_length=1)
    process_nm: float = Field(gt=0)
    mac_pj: float = Field(gt=0)               # one FP32 multiply-accumulate
    dram_pj_per_byte: float = Field(gt=0)     # compulsory operand bytes
    static_w: float = Field(ge=0)             # package power drawn whatever the work


class Host(StrictModel):
    """Where and when the figures were measured (recorded by the calibration)."""

    cpu_model: str = Field(min_length=1)
    logical_cpus: int = Field(gt=0)
    torch_version: str = Field(min_length=1)
    date: str = Field(min_length=1)
    note: str = ""


class CPUConfig(AccelConfig):
    model: Literal["cpu"]
    host: Host
    cores: int = Field(gt=0, le=4096)
    calibrated_threads: int = Field(gt=0, le=4096)
    threads: int = Field(gt=0, le=4096)
    simd_fmas_per_core_cycle: int = Field(gt=0, le=1024)
    batch: int = Field(gt=0, le=65536)
    op_us: float = Field(ge=0, description="fixed cost of one torch op call (dispatch, thread wake-up)")
    conv: Throughput
    gemm: Throughput
    gather: RowCopy
    scatter: RowCopy                       # index_put_ into an NCHW output (and channel-block scatters)
    scatter_channels_last: RowCopy         # index_add_ of whole pixels into a channels_last output
    channels_last: bool = False            # the layout the executor runs (execution.json's channels_last)
    memory: Memory
    ops: OpCounts
    path: Literal["auto", "spatial_gather", "union_gather", "channel_block_gather", "dense_masked", "tile_conv",
                  "channel_union", "channel_slice"] = "auto"
    max_block_loop: int = Field(default=64, gt=0, le=65536)
    energy: CPUEnergy

    def used_cores(self) -> int:
        return min(self.threads, self.cores)

    def thread_scale(self) -> float:
        """Compute rates scale with the cores in use relative to the calibration; bandwidths do not."""
        return self.used_cores() / min(self.calibrated_threads, self.cores)

    def peak_macs_per_cycle(self) -> float:
        return float(self.used_cores() * self.simd_fmas_per_core_cycle)

    def describe(self) -> str:
        return f"cpu {self.threads} threads of {self.cores} cores, batch {self.batch}, path {self.path}"

    def check(self, source: str) -> None:
        m = self.memory
        for fld, low, high, name in (("dram_gb_s", m.dram_gb_s, m.llc_gb_s, "llc_gb_s"),
                                     ("llc_gb_s", m.llc_gb_s, m.cache_gb_s, "cache_gb_s"),
                                     ("cache_kb", m.cache_kb, m.llc_kb, "llc_kb")):
            if low > high:
                raise HwsimError(source, f"memory.{fld}", f"{low} exceeds memory.{name} = {high}")
