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


class Cartesian(StrictModel):
    """SCNN's F x I multiplier array (``packing: cartesian``): per cycle, F non-zero weights of one
    input channel times I non-zero activations of the same channel (F x I = ``macs_per_pe``)."""

    weights: int = Field(gt=0, le=4096)
    acts: int = Field(gt=0, le=4096)


class Crossbar(StrictModel):
    """Scatter crossbar from the F x I products to ``banks`` accumulator banks (``crossbar: true``);
    a bank takes one product per cycle, ``queue_depth`` products wait in front of it."""

    banks: int = Field(gt=0, le=4096)
    queue_depth: int = Field(default=0, ge=0, le=64)


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
    # SCNN switches (docs/hwsim-sparse-pe.md, "SCNN switches"); the defaults keep the optimistic bound
    packing: Literal["ideal", "cartesian"] = "ideal"
    cartesian: Cartesian | None = None
    weight_density: float | None = Field(default=None, gt=0, le=1)
    halo: bool = False
    halo_words_per_cycle: float = Field(default=4.0, gt=0)
    crossbar: bool = False
    scatter: Crossbar | None = None
    sram_kb: PerOperandFloat
    dram: Dram
    energy: Energy

    def peak_macs_per_cycle(self) -> float:
        return float(self.pes * self.macs_per_pe)

    def describe(self) -> str:
        acts = "zero acts skipped" if self.skip_zero_acts else "zero acts not skipped"
        fmt = f"run_length {self.run_bits}b" if self.format == "run_length" else self.format
        text = f"sparse_pe {self.pes}x{self.macs_per_pe}, partition {self.partition}, {fmt} metadata, {acts}"
        if self.packing == "cartesian":
            text += f", cartesian {self.cartesian.weights}x{self.cartesian.acts}"
            text += "".join(f", {flag}" for flag in ("halo", "crossbar") if getattr(self, flag))
        if self.weight_density is not None:
            text += f", weight density {self.weight_density:g}"
        return text

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
        if self.packing == "cartesian":
            if self.cartesian is None:
                raise HwsimError(source, "cartesian", "required by packing 'cartesian' (weights, acts)")
            if self.cartesian.weights * self.cartesian.acts != self.macs_per_pe:
                raise HwsimError(source, "cartesian.weights",
                                 f"weights x acts = {self.cartesian.weights * self.cartesian.acts} must equal macs_per_pe = {self.macs_per_pe}")
            if self.partition != "spatial_tile":
                raise HwsimError(source, "packing", "'cartesian' needs partition 'spatial_tile' (SCNN's planar tiles)")
        for flag, what in (("halo", "halo exchange"), ("crossbar", "scatter crossbar")):
            if getattr(self, flag) and self.packing != "cartesian":
                raise HwsimError(source, flag, f"the {what} is modelled for packing 'cartesian' only")
        if self.crossbar and self.scatter is None:
            raise HwsimError(source, "scatter", "required by crossbar: true (banks, queue_depth)")
        if self.crossbar and self.macs_per_pe * (self.scatter.queue_depth + 1) > 1024:
            raise HwsimError(source, "scatter.queue_depth",
                             "macs_per_pe x (queue_depth + 1) must be at most 1024 (products per bank-conflict window)")
        for op in ("ifmap", "filter", "ofmap"):
            if int(getattr(self.sram_kb, op) * 1024) < getattr(self.word_bytes, op):
                raise HwsimError(source, f"sram_kb.{op}", "smaller than one word")
