"""Configuration of the GPU model (``model: gpu``); every field is described in docs/hwsim-gpu.md.

Figures in the shipped
YAML files come from NVIDIA's A100 / H100 whitepapers and datasheets; this class only checks
that a combination can exist (a tile that fits shared memory, an MMA-aligned tile, compact mode
with the costs it needs). The optional ``sustained_clock_mhz``, ``tensor_efficiency``, ``tactics``
and ``l2.model`` serve absolute numbers (docs/hwsim-gpu.md section 8); absent, nothing changes.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from hwsim.models.base import AccelConfig, Dram, StrictModel
from hwsim.trace.errors import HwsimError

# FP16/BF16 mma.sync shape m16n8k16 (PTX ISA): a thread-block tile is a whole number of them
MMA_M, MMA_N, MMA_K = 16, 8, 16
MAX_SPLIT_K = 64   # beyond this a split-K grid is a configuration mistake, not a tactic


class Tile(StrictModel):
    """Thread-block tile of the implicit GEMM: output pixels x output channels x reduction step."""

    m: int = Field(gt=0, le=1024)
    n: int = Field(gt=0, le=1024)
    k: int = Field(gt=0, le=1024)


class L2(StrictModel):
    mb: float = Field(gt=0, description="L2 capacity, MiB")
    bytes_per_cycle: float = Field(gt=0, description="L2 -> SM bandwidth, bytes per SM clock, whole chip")
    # how a layer too big for L2 re-reads its ifmap per column pass: "step" (all or nothing on the
    # layer's whole footprint) or "smooth" (hit fraction min(1, L2 / reuse distance)); docs/hwsim-gpu.md
    model: Literal["step", "smooth"] = "step"


class Tactics(StrictModel):
    """Kernel choices a tuned library picks from per layer (TensorRT / cuDNN autotuning): the
    model runs each and keeps the fastest dense one."""

    tiles: list[Tile] = Field(min_length=1)             # thread-block tiles besides ``tile``
    split_k: list[int] = Field(default=[1], min_length=1)  # reduction splits (ungated layers only)


class GPUSparse(StrictModel):
    mode: Literal["dense", "predicated", "compact"]
    index_bytes: int | None = Field(default=None, gt=0, le=16)    # compact: one active-tile index
    psum_bytes: int | None = Field(default=None, gt=0, le=8)      # compact: one partial sum (scatter-add)


class GPUEnergy(StrictModel):
    source: str = Field(min_length=1)
    process_nm: float = Field(gt=0)
    mac_pj: float = Field(gt=0)               # one tensor-core FP16 multiply-accumulate
    smem_pj_per_byte: float = Field(gt=0)     # shared-memory byte written or read
    l2_pj_per_byte: float = Field(gt=0)       # L2 byte moved to/from an SM
    dram_pj_per_bit: float = Field(gt=0)      # HBM access + interface
    static_w: float = Field(ge=0)             # power drawn whatever the work (leakage, clocks, fans off)


class GPUConfig(AccelConfig):
    model: Literal["gpu"]
    # clock the SMs and L2 hold under sustained load (below boost ``clock_mhz``); None = clock_mhz
    sustained_clock_mhz: float | None = Field(default=None, gt=0)
    # fraction of the peak tensor rate a tuned kernel reaches on a whole tile (issue, sync, epilogue)
    tensor_efficiency: float = Field(default=1.0, gt=0, le=1)
    tactics: Tactics | None = None
    sms: int = Field(gt=0, le=1024)
    tensor_macs_per_sm_cycle: int = Field(gt=0, le=1 << 16)
    # FMA per SM per clock on the CUDA cores (non-tensor FP16): depthwise / narrow grouped convs
    cuda_core_macs_per_sm_cycle: int | None = Field(default=None, gt=0, le=1 << 16)
    smem_kb_per_sm: float = Field(gt=0)
    tile: Tile
    stages: int = Field(gt=0, le=16)
    tiles_per_sm: int = Field(gt=0, le=64)
    l2: L2
    dram: Dram
    launch_us: float = Field(ge=0)
    tile_latency_cycles: float = Field(ge=0)
    batch: int = Field(gt=0, le=65536)
    sparse: GPUSparse
    energy: GPUEnergy

    def peak_macs_per_cycle(self) -> float:
        return float(self.sms * self.tensor_macs_per_sm_cycle)

    def describe(self) -> str:
        t = self.tile
        return f"gpu {self.sms} SMs, tile {t.m}x{t.n}x{t.k}, batch {self.batch}, sparse mode {self.sparse.mode}"

    def clock_scale(self) -> float:
        """Work the SMs do per ``clock_mhz`` cycle relative to their per-clock rates: every cycle
        figure is counted at ``clock_mhz`` while the SMs and L2 run at the sustained clock."""
        return 1.0 if self.sustained_clock_mhz is None else self.sustained_clock_mhz / self.clock_mhz

    def smem_bytes_per_tile(self, tile: Tile | None = None) -> int:
        """Operand staging of one resident tile: ``stages`` buffers of an A (m x k) and B (k x n) slice."""
        t = self.tile if tile is None else tile
        return self.stages * t.k * (t.m * self.word_bytes.ifmap + t.n * self.word_bytes.filter)

    def _check_tile(self, source: str, t: Tile, where: str) -> None:
        for fld, val, step in (("m", t.m, MMA_M), ("n", t.n, MMA_N), ("k", t.k, MMA_K)):
            if val % step:
                raise HwsimError(source, f"{where}.{fld}", f"{val} is not a multiple of {step} (FP16 MMA shape m16n8k16)")
        need = self.tiles_per_sm * self.smem_bytes_per_tile(t)
        have = self.smem_kb_per_sm * 1024
        if need > have:
            raise HwsimError(source, "tiles_per_sm" if where == "tile" else where,
                             f"{self.tiles_per_sm} resident tiles x {self.smem_bytes_per_tile(t)} B of staged operands "
                             f"(stages x k x (m+n) x word) = {need} B exceed smem_kb_per_sm = {have:.0f} B")

    def check(self, source: str) -> None:
        self._check_tile(source, self.tile, "tile")
        if self.tactics is not None:
            for i, t in enumerate(self.tactics.tiles):
                self._check_tile(source, t, f"tactics.tiles.{i}")
            for s in self.tactics.split_k:
                if not 1 <= s <= MAX_SPLIT_K:
                    raise HwsimError(source, "tactics.split_k", f"{s} is not a split of the reduction (1..{MAX_SPLIT_K})")
        if self.sustained_clock_mhz is not None and self.sustained_clock_mhz > self.clock_mhz:
            raise HwsimError(source, "sustained_clock_mhz",
                             f"{self.sustained_clock_mhz} MHz exceeds clock_mhz = {self.clock_mhz} (boost)")
        if self.sparse.mode == "compact":
            for fld in ("index_bytes", "psum_bytes"):
                if getattr(self.sparse, fld) is None:
                    raise HwsimError(source, f"sparse.{fld}", "required by mode 'compact' (a cost of compaction)")
