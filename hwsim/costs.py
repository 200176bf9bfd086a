"""Energy, memory traffic and the compute/transfer roofline from model-neutral access counts.

A model counts what one image of a layer does (:class:`Accesses`: MACs and bytes per operand and
level) and this module prices it with the configuration's energy table, so every model shares
one arithmetic (the order of every floating-point operation is part of the outputs).

Energy components (pJ): ``mac``, ``rf`` (register file), ``sram_<operand>`` (array-side
accesses), ``sram_fill``/``sram_drain`` (SRAM side of DRAM transfers), ``index`` (gather or
compression metadata), optionally ``gate`` (gate decisions), ``dram_<operand>``, ``static``
(static power x time). Traffic in bytes per operand and level.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Accesses:
    """What one image of a layer costs, in MACs and bytes (metadata bits / 8 for the index)."""

    macs: float
    sram_ifmap_read: float
    sram_filter_read: float
    sram_ofmap_write: float
    sram_index_read: float
    dram_ifmap_read: float
    dram_filter_read: float
    dram_ofmap_write: float
    sram_ofmap_read: float = 0.0     # partial sums read back for accumulation
    dram_ofmap_read: float = 0.0     # spilled partial sums read back


def bytes_per_cycle(bandwidth_gb_s: float, clock_mhz: float) -> float:
    """DRAM bytes per clock cycle of a bandwidth in GB/s (1e9 bytes/s)."""
    return bandwidth_gb_s * 1e9 / (clock_mhz * 1e6)


def roofline(compute_cycles: Any, transfer_bytes: Any, bytes_per_cycle: float) -> Any:
    """Compute and transfers overlap (double buffering): the slower one sets the time."""
    return max(compute_cycles, transfer_bytes / bytes_per_cycle)


def traffic_bytes(a: Accesses) -> dict[str, float]:
    return {
        "sram_ifmap_read": a.sram_ifmap_read,
        "sram_filter_read": a.sram_filter_read,
        "sram_ofmap_write": a.sram_ofmap_write,
        "sram_index_read": a.sram_index_read,
        "dram_ifmap_read": a.dram_ifmap_read,
        "dram_filter_read": a.dram_filter_read,
        "dram_ofmap_write": a.dram_ofmap_write,
        "sram_ofmap_read": a.sram_ofmap_read,
        "dram_ofmap_read": a.dram_ofmap_read,
    }


def dram_bytes(a: Accesses) -> float:
    return a.dram_ifmap_read + a.dram_filter_read + a.dram_ofmap_write + a.dram_ofmap_read


def energy_pj(a: Accesses, energy: Any, sram_kb: Any, clock_mhz: float, cycles: float,
              gate_pj: float | None = None) -> dict[str, float]:
    """Energy components and ``total`` of ``a`` over ``cycles`` (the total cycles, for static
    power). ``energy``: the config's Energy table; ``sram_kb``: its per-operand SRAM sizes;
    ``gate_pj``: energy of the gate decisions (a ``gate`` component) for models that price them."""
    e = energy
    rd = lambda op: e.sram_pj_per_byte(getattr(sram_kb, op), "read")  # noqa: E731
    wr = lambda op: e.sram_pj_per_byte(getattr(sram_kb, op), "write")  # noqa: E731
    index_pj = e.index_pj_per_byte if e.index_pj_per_byte is not None else rd("ifmap")
    out = {
        "mac": a.macs * e.mac_pj,
        "rf": a.macs * e.rf_accesses_per_mac * e.rf_access_pj,
        "sram_ifmap": a.sram_ifmap_read * rd("ifmap"),
        "sram_filter": a.sram_filter_read * rd("filter"),
        "sram_ofmap": a.sram_ofmap_write * wr("ofmap") + a.sram_ofmap_read * rd("ofmap"),
        "sram_fill": a.dram_ifmap_read * wr("ifmap") + a.dram_filter_read * wr("filter")
        + a.dram_ofmap_read * wr("ofmap"),
        "sram_drain": a.dram_ofmap_write * rd("ofmap"),
        "index": a.sram_index_read * index_pj,
    }
    if gate_pj is not None:
        out["gate"] = gate_pj
    out.update({
        "dram_ifmap": a.dram_ifmap_read * 8 * e.dram_read_pj(),
        "dram_filter": a.dram_filter_read * 8 * e.dram_read_pj(),
        "dram_ofmap": a.dram_ofmap_write * 8 * e.dram_write_pj() + a.dram_ofmap_read * 8 * e.dram_read_pj(),
        # mW x cycles / MHz = 1e-3 W x 1e-6 s = 1e-9 J = 1e3 pJ
        "static": e.static_mw * cycles / clock_mhz * 1e3,
    })
    out["total"] = sum(out.values())
    return out
