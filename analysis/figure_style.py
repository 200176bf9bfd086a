"""How the dashboard's figures look: palettes, units and axis helpers shared by every builder.

Energy is drawn in joules with SI prefixes (``1.2 mJ``, ``350 nJ``): the simulators report pJ and
plotly's default turned a GPU layer's 1.05e9 pJ into "1.05486B". Energy components are coloured
by family (compute, gating, on-chip memory, DRAM, static), one hue per family and shades within
it, so a stack reads as "how much goes to memory" at a glance.
"""
from __future__ import annotations

import html
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from plotly.colors import qualitative

from analysis.pareto import as_float

TEMPLATE = "plotly_white"
ACCEL_PALETTE = qualitative.Plotly + qualitative.D3
RUN_PALETTE = qualitative.Dark24 + qualitative.Alphabet
LOG_RATIO = 30.0  # a cost axis spanning more than this factor is drawn in log scale
PJ = 1e-12        # joules per picojoule
DENSE_LABEL = "dense (ungated)"

# family -> (label, shades dark to light); a component's family comes from its name (component_family)
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "compute": ("compute", ("#08519c", "#3182bd", "#6baed6", "#9ecae1")),
    "gating": ("gating / indexing", ("#8e0152", "#c51b7d", "#de77ae")),
    "onchip": ("on-chip memory", ("#00441b", "#006d2c", "#238b45", "#41ab5d", "#74c476", "#a1d99b",
                                  "#c7e9c0")),
    "dram": ("off-chip DRAM", ("#7f2704", "#d94801", "#fd8d3c", "#fdbe85")),
    "static": ("static / leakage", ("#969696", "#525252", "#cccccc")),
    "other": ("other", ("#8c6d31", "#bd9e39", "#e7cb94")),
}
_PREFIXES = (("compute", ("mac", "rf", "alu", "pe")), ("gating", ("gate", "index", "predictor")),
             ("onchip", ("sram", "smem", "l1", "l2", "buffer", "glb")), ("dram", ("dram", "hbm", "offchip")),
             ("static", ("static", "leak", "idle")))

num = as_float  # a float, NaN for None/bool/strings (shared with analysis.pareto)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)


def esc(value: Any) -> str:
    return html.escape(fmt(value))


def component_family(component: str) -> str:
    """Family key of an energy component (``mac``, ``sram_ifmap`` or the column ``energy_dram_pj``)."""
    name = component.lower()
    if name.startswith("energy_") and name.endswith("_pj"):
        name = name[len("energy_"):-len("_pj")]
    for family, prefixes in _PREFIXES:
        if any(name == p or name.startswith(p + "_") or name.startswith(p) and name[len(p):].isdigit()
               for p in prefixes):
            return family
    return "other"


def component_colours(components: Sequence[str]) -> dict[str, str]:
    """Colour per component: the family's hue, a different shade per member (cycling if a family
    has more members than shades)."""
    seen: dict[str, int] = {}
    out = {}
    for comp in components:
        family = component_family(comp)
        shades = FAMILIES[family][1]
        out[comp] = shades[seen.get(family, 0) % len(shades)]
        seen[family] = seen.get(family, 0) + 1
    return out


def by_family(components: Iterable[str]) -> list[str]:
    """Components ordered by family (compute first, static last), stable within a family."""
    order = list(FAMILIES)
    return sorted(components, key=lambda c: order.index(component_family(c)))


def accel_colours(points: Sequence[Mapping]) -> dict[str, str]:
    names = list(dict.fromkeys(str(p.get("accel")) for p in points))
    return {name: ACCEL_PALETTE[i % len(ACCEL_PALETTE)] for i, name in enumerate(names)}


def is_dense(p: Mapping) -> bool:
    """An ungated run (gate method ``none`` or missing): its S/b/G are meaningless."""
    return str(p.get("gate_method") or "none").lower() in ("none", "dense", "n/a", "")


def gate_label(p: Mapping) -> str:
    """``S=8, b=1`` of a gated point; ``dense (ungated)`` for a run without gates."""
    if is_dense(p):
        return DENSE_LABEL
    return f"S={fmt(p.get('gate_S'))}, b={fmt(p.get('gate_b'))}"


SI_PREFIXES = ((1e0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"), (1e-15, "f"))


def si(value: float, unit: str, digits: int = 3) -> str:
    """``value`` (in ``unit``) with an SI prefix: si(1.05e-3, 'J') == '1.05 mJ'; 'n/a' for NaN."""
    if not math.isfinite(value):
        return "n/a"
    if value == 0:
        return f"0 {unit}"
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")) + SI_PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"


def si_pj(value_pj: Any) -> str:
    return si(num(value_pj) * PJ, "J")


def energy_axis(title: str) -> dict[str, Any]:
    """Axis settings for an energy in joules: SI-prefixed ticks (``500µJ``, ``1mJ``)."""
    return dict(title_text=title + " (J)", exponentformat="SI", ticksuffix="J", tickformat="~s")


def log_axis(values: Iterable[float]) -> bool:
    v = np.array([x for x in values if math.isfinite(x) and x > 0])
    return bool(len(v)) and v.max() / v.min() > LOG_RATIO


def fitted_range(values: Iterable[float], margin: float = 0.08, floor: float = 0.005) -> list[float] | None:
    """[min, max] of the finite values widened by ``margin`` of the span (at least ``floor``) per
    side: an accuracy axis that shows the differences, not 0..1; None without values."""
    v = [x for x in values if math.isfinite(x)]
    if not v:
        return None
    lo, hi = min(v), max(v)
    pad = max((hi - lo) * margin, floor)
    return [lo - pad, hi + pad]


def wrap_title(text: str, width: int = 48) -> str:
    """Break a subplot title at ', ' / ': ' into lines of at most ``width`` characters (``<br>``):
    a long title centred over a narrow subplot ran off the figure's left edge."""
    lines, line = [], ""
    for part in text.replace(": ", ":\x00").replace(", ", ",\x00").split("\x00"):
        if line and len(line) + 1 + len(part) > width:
            lines.append(line)
            line = part
        else:
            line = f"{line} {part}" if line else part
    lines.append(line)
    return "<br>".join(lines)
