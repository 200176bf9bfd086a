"""The contract between the API and each accelerator model (systolic, sparse-PE, GPU).

A model is a module with three functions, found through :data:`MODEL_MODULES` by the
config's ``model`` field:

``dense(work, cfg) -> Figures``
    one image of the layer with no sparsity exploited (the baseline every speed-up is against);
``sparse(work, cfg, gate_masks, act_masks, act_density) -> list[Figures]``
    one Figures per image. ``gate_masks``: bool (n, C_out, H_out, W_out), 1 = the output's
    conditional part is computed, or None for a layer without a gate (all outputs whole).
    ``act_masks``: bool (n_a, C_in, H_in, W_in), 1 = non-zero input activation, or None;
    ``act_density``: the trace's mean non-zero fraction of the input (statistics), or None.
    Models that do not exploit input zeros ignore both. With all gates on and no activation
    information the result must equal ``dense``. Without gate masks (an ungated layer) return
    ONE Figures, the exact mean over the activation images: the API aligns every layer with the
    gate-mask images and repeats one-image layers;
``granularity(work, cfg) -> str``
    the unit of work the hardware can skip for this layer (e.g. ``fold 32x32 outputs``).

``Figures`` carries what every model reports; ``counters`` holds model-specific counts (folds,
tiles, imbalance, metadata bits...) which end up as extra CSV columns.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

from hwsim.config import AccelConfig

DRAM_KEYS = ("dram_ifmap_read", "dram_filter_read", "dram_ofmap_write")

# model name -> module implementing dense / sparse / granularity
MODEL_MODULES: dict[str, str] = {
    "systolic": "hwsim.systolic_model",
    "sparse_pe": "hwsim.sparse_pe",
    "gpu": "hwsim.gpu",
}


@dataclass
class Figures:
    """One layer, one image, on one accelerator."""

    cycles: float                              # compute cycles
    total_cycles: float                        # with memory: max(compute, transfer) or a roofline
    macs: float                                # MACs performed (useful + wasted in partly-on units)
    energy_pj: dict[str, float]                # components and "total"
    traffic_bytes: dict[str, float]            # per operand and level; DRAM_KEYS present
    counters: dict[str, float] = field(default_factory=dict)

    @property
    def dram_bytes(self) -> float:
        return sum(self.traffic_bytes[k] for k in DRAM_KEYS)


def mean_figures(items: list[Figures]) -> Figures:
    """Exact mean over images of every field (counters: keys of the first item)."""
    n = len(items)

    def avg(dicts: list[dict]) -> dict:
        return {k: sum(d[k] for d in dicts) / n for k in dicts[0]}

    return Figures(
        cycles=sum(f.cycles for f in items) / n, total_cycles=sum(f.total_cycles for f in items) / n,
        macs=sum(f.macs for f in items) / n, energy_pj=avg([f.energy_pj for f in items]),
        traffic_bytes=avg([f.traffic_bytes for f in items]), counters=avg([f.counters for f in items]),
    )


def model_for(cfg: AccelConfig) -> ModuleType:
    return importlib.import_module(MODEL_MODULES[cfg.model])
