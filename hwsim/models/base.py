"""The pieces every accelerator model's configuration builds on: the strict pydantic base, the
per-operand and DRAM / energy sections, and :class:`AccelConfig`, the base class of each model's
config class (which lives in the model's package, ``hwsim/models/<name>/config.py``).

Every field is documented in ``docs/accel-config.md``. Validation errors raise
:class:`~hwsim.trace.errors.HwsimError` naming the file and the dotted field path.
"""
from __future__ import annotations

import abc
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from hwsim.trace.errors import HwsimError
from hwsim.trace.fileio import load_yaml
from hwsim.trace.strict import scalar_problem

ENERGY_TABLES = Path(__file__).resolve().parent.parent / "energy_tables"  # hwsim/energy_tables/*.yaml

OPERANDS = ("ifmap", "filter", "ofmap")


class StrictModel(BaseModel):
    """Unknown keys are errors; no boolean for a number, no integer beyond 64 bits, no infinite or
    NaN float, in every field of every model's config (``hwsim.trace.strict``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        problem = scalar_problem(cls.model_fields[info.field_name].annotation, value)
        if problem is not None:
            raise PydanticCustomError("strict_scalar", problem)  # no 'Value error, ' prefix
        return value


class PerOperandInt(StrictModel):
    ifmap: int = Field(gt=0)
    filter: int = Field(gt=0)
    ofmap: int = Field(gt=0)


class PerOperandFloat(StrictModel):
    ifmap: float = Field(gt=0)
    filter: float = Field(gt=0)
    ofmap: float = Field(gt=0)


class Dram(StrictModel):
    bandwidth_gb_s: float = Field(gt=0, description="sustained DRAM bandwidth, GB/s (1e9 bytes/s)")


class SramEnergyPoint(StrictModel):
    kb: float = Field(gt=0)
    read_pj_per_byte: float = Field(gt=0)
    write_pj_per_byte: float = Field(gt=0)


class Energy(StrictModel):
    source: str = Field(min_length=1)
    process_nm: float = Field(gt=0)
    mac_pj: float = Field(gt=0)
    rf_access_pj: float = Field(gt=0)
    rf_accesses_per_mac: float = Field(ge=0)
    sram: list[SramEnergyPoint] = Field(min_length=1)
    sram_scaling: Literal["log_linear", "power_law"] = "log_linear"   # how sizes between entries are priced
    dram_pj_per_bit: float = Field(gt=0)        # one figure for reads and writes, unless split below
    dram_read_pj_per_bit: float | None = Field(default=None, gt=0)
    dram_write_pj_per_bit: float | None = Field(default=None, gt=0)
    index_pj_per_byte: float | None = Field(default=None, gt=0)
    static_mw: float = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _from_table(cls, data: Any) -> Any:
        """``table: NAME`` takes every field from ``hwsim/energy_tables/NAME.yaml`` (one cited
        source per node, shared by the configs that name it); fields beside it override."""
        if not isinstance(data, dict) or "table" not in data:
            return data
        name = data["table"]
        known = sorted(p.stem for p in ENERGY_TABLES.glob("*.yaml"))
        if not isinstance(name, str) or name not in known:
            raise ValueError(f"table {name!r}: unknown energy table (known: {', '.join(known)})")
        return {**load_yaml(ENERGY_TABLES / f"{name}.yaml"), **{k: v for k, v in data.items() if k != "table"}}

    @model_validator(mode="after")
    def _sorted(self) -> "Energy":
        sizes = [p.kb for p in self.sram]
        if sizes != sorted(sizes) or len(set(sizes)) != len(sizes):
            raise ValueError("sram entries must have strictly increasing kb")
        return self

    def dram_read_pj(self) -> float:
        """pJ per bit read from DRAM (``dram_read_pj_per_bit``, else ``dram_pj_per_bit``)."""
        return self.dram_read_pj_per_bit if self.dram_read_pj_per_bit is not None else self.dram_pj_per_bit

    def dram_write_pj(self) -> float:
        """pJ per bit written to DRAM (``dram_write_pj_per_bit``, else ``dram_pj_per_bit``)."""
        return self.dram_write_pj_per_bit if self.dram_write_pj_per_bit is not None else self.dram_pj_per_bit

    def sram_pj_per_byte(self, size_kb: float, kind: str) -> float:
        """Per-byte access energy of an SRAM of ``size_kb`` from the ``sram`` entries, clamped
        below the smallest, extrapolated from the two largest above. ``sram_scaling``:
        ``log_linear`` = energy linear in log2(size) between entries; ``power_law`` = log(energy)
        linear in log2(size), i.e. a power law E = E0 * (S / S0)^b on each segment (the shape
        of CACTI's curve, docs/accel-config.md)."""
        key = "read_pj_per_byte" if kind == "read" else "write_pj_per_byte"
        power = self.sram_scaling == "power_law"
        pts = [(math.log2(p.kb), math.log2(getattr(p, key)) if power else getattr(p, key)) for p in self.sram]
        if len(pts) == 1:
            return getattr(self.sram[0], key)
        x = math.log2(size_kb)
        if x <= pts[0][0]:
            return getattr(self.sram[0], key)
        if x >= pts[-1][0]:
            (x0, y0), (x1, y1) = pts[-2], pts[-1]
        else:
            i = max(j for j in range(len(pts)) if pts[j][0] <= x)
            (x0, y0), (x1, y1) = pts[i], pts[i + 1]
        y = y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        return 2.0 ** y if power else y


class AccelConfig(StrictModel):
    """Fields every accelerator model has. Subclasses add their own and set ``model``."""

    name: str = Field(min_length=1)
    model: str
    clock_mhz: float = Field(gt=0)
    word_bytes: PerOperandInt     # bytes per ifmap / filter / ofmap word (activation footprints too)

    @abc.abstractmethod
    def peak_macs_per_cycle(self) -> float:
        """MACs the machine can complete per cycle at full use (for utilisation)."""

    def describe(self) -> str:
        """Short mode string for reports (e.g. ``os, sparse compact``)."""
        return self.model

    def check(self, source: str) -> None:
        """Cross-field checks beyond pydantic's (raise HwsimError naming the field)."""

    def with_overrides(self, **changes: Any) -> "AccelConfig":
        """A copy with top-level fields replaced (e.g. ``dataflow='ws'``), re-validated."""
        data = self.model_dump()
        for key, value in changes.items():
            if isinstance(value, BaseModel):
                value = value.model_dump()
            data[key] = value
        return validate_config(type(self), data, f"{self.name} (overrides)")


def _format_error(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "missing":
        msg = "missing"
    elif err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "literal_error":
        msg = f"{msg}, got {err.get('input')!r}"
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        msg = f"{msg}, got {err['input']!r}"
    return loc, msg


def validate_config(cls: type[AccelConfig], data: Any, source: str) -> AccelConfig:
    """``data`` validated as ``cls`` plus its cross-field checks; a one-line HwsimError otherwise."""
    try:
        cfg = cls.model_validate(data)
    except ValidationError as exc:
        loc, msg = _format_error(exc)
        raise HwsimError(source, loc, msg) from None
    try:
        cfg.check(source)
    except ArithmeticError as exc:  # e.g. sram_kb: 1e308 -> an infinite word count
        raise HwsimError(source, "values", f"out of the range the model can compute with ({exc})") from None
    return cfg
