"""What every accelerator model reports for one layer and one image: :class:`Figures`.

Besides cycles, MACs, energy and traffic, a model fills the typed *loss* fields that say where a
gated layer's FLOPs reduction is lost on the way to a speed-up (``analysis.pareto``):

- ``skip_units`` / ``units_run``: the hardware's skip units of the dense mapping and those that
  still ran (systolic folds, GPU thread-block tiles); None for a model without such units;
- ``imbalance_cycles``: compute cycles beyond a perfectly balanced schedule (sparse-PE load
  imbalance); None for a model that does not report imbalance.

The same numbers also appear among the model's ``counters`` under the model's own names (the CSV
columns); :class:`LossColumns`, declared by each model's registry entry, names those columns so
that a sweep's ``layers.csv`` can be read back into the typed fields.
"""
from __future__ import annotations

from dataclasses import dataclass, field

DRAM_KEYS = ("dram_ifmap_read", "dram_filter_read", "dram_ofmap_write")
OPTIONAL_DRAM_KEYS = ("dram_ofmap_read",)  # summed where a model reports them (spilled partial sums)


@dataclass
class Figures:
    """One layer, one image, on one accelerator."""

    cycles: float                              # compute cycles
    total_cycles: float                        # with memory: max(compute, transfer) or a roofline
    macs: float                                # MACs performed (useful + wasted in partly-on units)
    energy_pj: dict[str, float]                # components and "total"
    traffic_bytes: dict[str, float]            # per operand and level; DRAM_KEYS present
    counters: dict[str, float] = field(default_factory=dict)
    skip_units: float | None = None            # skip units of the dense mapping (None: the model has none)
    units_run: float | None = None             # of those, the units that ran
    imbalance_cycles: float | None = None      # cycles beyond a balanced schedule (None: not modelled)

    @property
    def dram_bytes(self) -> float:
        return sum(self.traffic_bytes[k] for k in DRAM_KEYS) + sum(
            self.traffic_bytes.get(k, 0.0) for k in OPTIONAL_DRAM_KEYS)


LOSS_FIELDS = ("skip_units", "units_run", "imbalance_cycles")


@dataclass(frozen=True)
class LossColumns:
    """The counter (CSV column) names under which a model reports its typed loss fields; None for
    a field the model does not have."""

    skip_units: str | None = None
    units_run: str | None = None
    imbalance_cycles: str | None = None

    def columns(self) -> dict[str, str]:
        """Typed field -> column, for the fields the model has."""
        return {f: getattr(self, f) for f in LOSS_FIELDS if getattr(self, f) is not None}


def mean_figures(items: list[Figures]) -> Figures:
    """Exact mean over images of every field (counters: keys of the first item)."""
    n = len(items)

    def avg(dicts: list[dict]) -> dict:
        return {k: sum(d[k] for d in dicts) / n for k in dicts[0]}

    def avg_opt(name: str) -> float | None:
        if getattr(items[0], name) is None:
            return None
        return sum(getattr(f, name) for f in items) / n

    return Figures(
        cycles=sum(f.cycles for f in items) / n, total_cycles=sum(f.total_cycles for f in items) / n,
        macs=sum(f.macs for f in items) / n, energy_pj=avg([f.energy_pj for f in items]),
        traffic_bytes=avg([f.traffic_bytes for f in items]), counters=avg([f.counters for f in items]),
        **{name: avg_opt(name) for name in LOSS_FIELDS},
    )
