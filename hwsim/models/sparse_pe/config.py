"""Configuration of the sparse-PE accelerator (``model: sparse_pe``); fields in docs/hwsim-sparse-pe.md.

Sections used by only one partition or format may be
present in a file whose partition/format does not use them (they are then ignored) so that
sweeps can switch ``partition`` / ``format`` with ``with_overrides``; a section the chosen
partition or format needs must be present and consistent.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from hwsim.models.base import AccelConfig, Dram, Energy, PerOperandFloat, StrictModel
from hwsim.trace.errors import HwsimError


class SpatialTile(StrictModel):
    """PE grid for ``partition: spatial_tile`` (rows x cols must equal ``pes``)."""

    rows: int = Field(gt=0, le=4096)
    cols: int = Field(gt=0, le=4096)
    channels_per_step: int = Field(gt=0, le=65536)


class DynamicQueue(StrictModel):
    """Work queue for ``partition: dynamic``."""

    unit_outputs: int = Field(gt=0, le=1 << 20)
    dispatch_cycles: float = Field(ge=0)


class GateDecision(StrictModel):
    """Cost of one gate decision (one compare of the base partial sum per decision block)."""

    cycles: float = Field(ge=0)
    compare_pj: float = Field(ge=0)


class SparsePEConfig(AccelConfig):
    model: Literal["sparse_pe"]
    pes: int = Field(gt=0, le=65536)
    macs_per_pe: int = Field(gt=0, le=4096)
    partition: Literal["output_channel", "spatial_tile", "dynamic"]
    spatial_tile: SpatialTile | None = None
    dynamic: DynamicQueue | None = None
    skip_zero_acts: bool
    format: Literal["bitmask", "run_length", "coordinate"]
    run_bits: int | None = Field(default=None, ge=1, le=32)
    gate_decision: GateDecision
    sram_kb: PerOperandFloat
    dram: Dram
    energy: Energy

    def peak_macs_per_cycle(self) -> float:
        return float(self.pes * self.macs_per_pe)

    def describe(self) -> str:
        acts = "zero acts skipped" if self.skip_zero_acts else "zero acts not skipped"
        fmt = f"run_length {self.run_bits}b" if self.format == "run_length" else self.format
        return f"sparse_pe {self.pes}x{self.macs_per_pe}, partition {self.partition}, {fmt} metadata, {acts}"

    def check(self, source: str) -> None:
        if self.partition == "spatial_tile":
            if self.spatial_tile is None:
                raise HwsimError(source, "spatial_tile", "required by partition 'spatial_tile' (rows, cols, channels_per_step)")
            if self.spatial_tile.rows * self.spatial_tile.cols != self.pes:
                raise HwsimError(source, "spatial_tile.rows",
                                 f"rows x cols = {self.spatial_tile.rows * self.spatial_tile.cols} must equal pes = {self.pes}")
        if self.partition == "dynamic" and self.dynamic is None:
            raise HwsimError(source, "dynamic", "required by partition 'dynamic' (unit_outputs, dispatch_cycles)")
        if self.format == "run_length" and self.run_bits is None:
            raise HwsimError(source, "run_bits", "required by format 'run_length' (bits of the zero-run field)")
        for op in ("ifmap", "filter", "ofmap"):
            if int(getattr(self.sram_kb, op) * 1024) < getattr(self.word_bytes, op):
                raise HwsimError(source, f"sram_kb.{op}", "smaller than one word")
