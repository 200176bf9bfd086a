"""Accelerator configuration: load and validate ``accel_configs/*.yaml``.

Every field is documented in ``docs/accel-config.md``. Validation errors raise
:class:`~hwsim.trace.errors.HwsimError` naming the file and the dotted field path.

The YAML's ``model`` field picks the configuration class (and the simulator model,
``hwsim.models``): each model's class subclasses :class:`AccelConfig`, which holds what every
model has (name, clock) and the generic override machinery used by the CLI and the sweeps.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
import abc
import importlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hwsim.trace.errors import HwsimError
from hwsim.trace.fileio import load_yaml

OPERANDS = ("ifmap", "filter", "ofmap")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArrayShape(_Strict):
    rows: int = Field(gt=0, le=4096)
    cols: int = Field(gt=0, le=4096)


class PerOperandInt(_Strict):
    ifmap: int = Field(gt=0)
    filter: int = Field(gt=0)
    ofmap: int = Field(gt=0)


class PerOperandFloat(_Strict):
    ifmap: float = Field(gt=0)
    filter: float = Field(gt=0)
    ofmap: float = Field(gt=0)


class Dram(_Strict):
    bandwidth_gb_s: float = Field(gt=0, description="sustained DRAM bandwidth, GB/s (1e9 bytes/s)")


class SramEnergyPoint(_Strict):
    kb: float = Field(gt=0)
    read_pj_per_byte: float = Field(gt=0)
    write_pj_per_byte: float = Field(gt=0)


class Energy(_Strict):
    source: str = Field(min_length=1)
    process_nm: float = Field(gt=0)
    mac_pj: float = Field(gt=0)
    rf_access_pj: float = Field(gt=0)
    rf_accesses_per_mac: float = Field(ge=0)
    sram: list[SramEnergyPoint] = Field(min_length=1)
    dram_pj_per_bit: float = Field(gt=0)
    index_pj_per_byte: float | None = Field(default=None, gt=0)
    static_mw: float = Field(ge=0)

    @model_validator(mode="after")
    def _sorted(self) -> "Energy":
        sizes = [p.kb for p in self.sram]
        if sizes != sorted(sizes) or len(set(sizes)) != len(sizes):
            raise ValueError("sram entries must have strictly increasing kb")
        return self

    def sram_pj_per_byte(self, size_kb: float, kind: str) -> float:
        """Per-byte access energy of an SRAM of ``size_kb``: log-linear interpolation in size
        between table points, extrapolated above the largest, clamped below the smallest."""
        key = "read_pj_per_byte" if kind == "read" else "write_pj_per_byte"
        pts = [(math.log2(p.kb), getattr(p, key)) for p in self.sram]
        if len(pts) == 1:
            return pts[0][1]
        x = math.log2(size_kb)
        if x <= pts[0][0]:
            return pts[0][1]
        if x >= pts[-1][0]:
            (x0, y0), (x1, y1) = pts[-2], pts[-1]
        else:
            i = max(j for j in range(len(pts)) if pts[j][0] <= x)
            (x0, y0), (x1, y1) = pts[i], pts[i + 1]
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


class Sparse(_Strict):
    mode: Literal["gate", "skip", "compact"]
    compact_overhead_cycles: int = Field(default=0, ge=0)
    index_bits: int = Field(default=0, ge=0, le=64)

    @model_validator(mode="after")
    def _compact(self) -> "Sparse":
        if self.mode == "compact" and self.index_bits == 0:
            raise ValueError("mode 'compact' needs index_bits > 0 (the cost of the gather index)")
        return self


class AccelConfig(_Strict):
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
        return parse_config(data, f"{self.name} (overrides)")


class SystolicConfig(AccelConfig):
    model: Literal["systolic"]
    array: ArrayShape
    dataflow: Literal["os", "ws", "is"]
    sram_kb: PerOperandFloat
    dram: Dram
    sparse: Sparse
    energy: Energy

    def sram_words(self, operand: str) -> int:
        return int(getattr(self.sram_kb, operand) * 1024) // getattr(self.word_bytes, operand)

    def peak_macs_per_cycle(self) -> float:
        return float(self.array.rows * self.array.cols)

    def describe(self) -> str:
        return f"systolic {self.dataflow}, sparse mode {self.sparse.mode}"

    def check(self, source: str) -> None:
        for op in OPERANDS:
            if self.sram_words(op) < 100:
                raise HwsimError(source, f"sram_kb.{op}", "must hold at least 100 words")


# model name -> "module:Class"; imported on demand so a model's config lives next to its code
CONFIG_CLASSES: dict[str, str] = {
    "systolic": "hwsim.config:SystolicConfig",
    "sparse_pe": "hwsim.sparse_pe_config:SparsePEConfig",
    "gpu": "hwsim.gpu_config:GPUConfig",
}


def config_class(model: Any, source: str) -> type[AccelConfig]:
    if model is None:
        raise HwsimError(source, "model", "missing")
    if model not in CONFIG_CLASSES:
        raise HwsimError(source, "model", f"unknown model {model!r} (known: {', '.join(sorted(CONFIG_CLASSES))})")
    module, cls = CONFIG_CLASSES[model].split(":")
    return getattr(importlib.import_module(module), cls)


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


def parse_config(data: Any, source: str) -> AccelConfig:
    if not isinstance(data, dict):
        raise HwsimError(source, "(top level)", "must be a mapping")
    try:
        cfg = config_class(data.get("model"), source).model_validate(data)
    except ValidationError as exc:
        loc, msg = _format_error(exc)
        raise HwsimError(source, loc, msg) from None
    cfg.check(source)
    return cfg


def load_config(path: str | os.PathLike) -> AccelConfig:
    return parse_config(load_yaml(path), str(path))
