"""Per-layer statistics of a trace (``LayerStats``): gate density (mean, std, histogram), input
activation density and effective MACs over the evaluation set; computed exactly from masks or
read back from ``trace.json`` and validated. numpy only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsim.trace.errors import HwsimError
from hwsim.trace.schema import LayerSpec, positive_int

HIST_BINS = 10


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerStats:
    """Per-layer statistics over the evaluation set (``n_images`` images)."""

    n_images: int
    gate_density_mean: float = 1.0
    gate_density_std: float = 0.0
    gate_density_hist: tuple[int, ...] = ()
    input_act_density: float | None = None
    effective_macs: float | None = None   # None: TraceWriter derives it from the gate density

    def to_json(self) -> dict:
        return {
            "n_images": self.n_images,
            "gate_density_mean": self.gate_density_mean,
            "gate_density_std": self.gate_density_std,
            "gate_density_hist": list(self.gate_density_hist),
            "hist_edges": np.linspace(0.0, 1.0, HIST_BINS + 1).round(6).tolist(),
            "input_act_density": self.input_act_density,
            "effective_macs": self.effective_macs,
        }


def _frac(value: Any, src: str, fld: str, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise HwsimError(src, fld, f"expected a number in [0, 1], got {value!r}")
    value = float(value)
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise HwsimError(src, fld, f"expected a number in [0, 1], got {value!r}")
    return value


def stats_from_json(obj: Any, spec: LayerSpec, source: str) -> LayerStats:
    where = f"layer {spec.name!r}.stats"
    if not isinstance(obj, dict):
        raise HwsimError(source, where, "must be an object")
    n = positive_int(obj.get("n_images"), source, f"{where}.n_images")
    mean = _frac(obj.get("gate_density_mean"), source, f"{where}.gate_density_mean")
    std = _frac(obj.get("gate_density_std"), source, f"{where}.gate_density_std")
    hist = obj.get("gate_density_hist", [])
    if not isinstance(hist, list) or (hist and (len(hist) != HIST_BINS or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in hist))):
        raise HwsimError(source, f"{where}.gate_density_hist", f"expected {HIST_BINS} non-negative counts")
    if hist and sum(hist) != n:
        raise HwsimError(source, f"{where}.gate_density_hist", f"counts sum to {sum(hist)}, not n_images={n}")
    act = _frac(obj.get("input_act_density"), source, f"{where}.input_act_density", allow_none=True)
    eff = obj.get("effective_macs")
    if isinstance(eff, bool) or not isinstance(eff, (int, float)) or not (0 <= eff <= spec.dense_macs * (1 + 1e-9)):
        raise HwsimError(source, f"{where}.effective_macs", f"expected a number in [0, dense_macs={spec.dense_macs}], got {eff!r}")
    if spec.gate is None and mean != 1.0:
        raise HwsimError(source, f"{where}.gate_density_mean", "an ungated layer has density 1")
    return LayerStats(n, mean, std, tuple(hist), act, float(eff))


def density_histogram(per_image: np.ndarray) -> tuple[int, ...]:
    counts, _ = np.histogram(np.clip(per_image, 0.0, 1.0), bins=HIST_BINS, range=(0.0, 1.0))
    return tuple(int(c) for c in counts)


def compute_stats(spec: LayerSpec, gate_masks: np.ndarray | None, act_masks: np.ndarray | None) -> LayerStats:
    """Statistics of one layer computed exactly from full-resolution masks."""
    if gate_masks is None:
        n = 1 if act_masks is None else int(act_masks.shape[0])
        act = None if act_masks is None else float(act_masks.mean())
        return LayerStats(n, 1.0, 0.0, density_histogram(np.ones(n)), act, float(spec.dense_macs))
    n = int(gate_masks.shape[0])
    per_image = gate_masks.reshape(n, -1).mean(axis=1)
    active = gate_masks.reshape(n, -1).sum(axis=1)
    eff = spec.base_macs() + active.astype(np.float64) * spec.cond_macs_per_output()
    act = None if act_masks is None else float(act_masks.mean())
    return LayerStats(n, float(per_image.mean()), float(per_image.std()), density_histogram(per_image),
                      act, float(eff.mean()))
