"""Configuration of the systolic array (``model: systolic``); fields in docs/accel-config.md."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hwsim.models.base import OPERANDS, AccelConfig, Dram, Energy, PerOperandFloat, StrictModel
from hwsim.trace.errors import HwsimError


class ArrayShape(StrictModel):
    rows: int = Field(gt=0, le=4096)
    cols: int = Field(gt=0, le=4096)


class Sparse(StrictModel):
    mode: Literal["gate", "skip", "compact"]
    compact_overhead_cycles: int = Field(default=0, ge=0)
    index_bits: int = Field(default=0, ge=0, le=64)

    @model_validator(mode="after")
    def _compact(self) -> "Sparse":
        if self.mode == "compact" and self.index_bits == 0:
            raise ValueError("mode 'compact' needs index_bits > 0 (the cost of the gather index)")
        return self


class SystolicConfig(AccelConfig):
    model: Literal["systolic"]
    array: ArrayShape
    dataflow: Literal["os", "ws", "is"]
    # faithful: partial sums kept in the PE (OS) or read back and accumulated in the OFMAP SRAM,
    # spilled to DRAM only when it cannot hold them; scalesim: SCALE-Sim v3's counting (every
    # row fold's partial sums written and drained, never read back), for exact agreement
    accumulation: Literal["faithful", "scalesim"] = "faithful"
    # calc: reads never stall (SCALE-Sim's CALC mode; DRAM bandwidth enters total_cycles through the
    # roofline); user: each SRAM fills over an interface of interface_words_per_cycle words per
    # cycle and the array stalls when a word is late (SCALE-Sim's USER mode, bandwidth.py)
    bandwidth_mode: Literal["calc", "user"] = "calc"
    interface_words_per_cycle: int | None = Field(default=None, gt=0, le=1 << 20)
    sram_kb: PerOperandFloat
    dram: Dram
    sparse: Sparse
    energy: Energy

    def sram_words(self, operand: str) -> int:
        return int(getattr(self.sram_kb, operand) * 1024) // getattr(self.word_bytes, operand)

    def peak_macs_per_cycle(self) -> float:
        return float(self.array.rows * self.array.cols)

    def describe(self) -> str:
        text = f"systolic {self.dataflow}, sparse mode {self.sparse.mode}, {self.accumulation} accumulation"
        if self.bandwidth_mode == "user":
            text += f", user bandwidth {self.interface_words_per_cycle} words/cycle"
        return text

    def check(self, source: str) -> None:
        for op in OPERANDS:
            if self.sram_words(op) < 100:
                raise HwsimError(source, f"sram_kb.{op}", "must hold at least 100 words")
        if self.bandwidth_mode == "user" and self.interface_words_per_cycle is None:
            raise HwsimError(source, "interface_words_per_cycle", "required when bandwidth_mode is 'user'")
        if self.bandwidth_mode == "calc" and self.interface_words_per_cycle is not None:
            raise HwsimError(source, "interface_words_per_cycle", "only used when bandwidth_mode is 'user'")
