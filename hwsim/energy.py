"""Energy and memory traffic from access counts x the configuration's energy table.

Components (pJ): ``mac``, ``rf`` (register file), ``sram_<operand>`` (array-side accesses),
``sram_fill``/``sram_drain`` (SRAM side of DRAM transfers), ``index`` (gather metadata),
``dram_<operand>``, ``static`` (static power x time). Traffic in bytes per operand and level.
"""
from __future__ import annotations

from hwsim.config import SystolicConfig as AccelConfig
from hwsim.systolic import Counts


def bytes_per_cycle(cfg: AccelConfig) -> float:
    return cfg.dram.bandwidth_gb_s * 1e9 / (cfg.clock_mhz * 1e6)


def traffic_bytes(c: Counts, cfg: AccelConfig) -> dict[str, float]:
    wb = cfg.word_bytes
    return {
        "sram_ifmap_read": c.sram_ifmap_reads * wb.ifmap,
        "sram_filter_read": c.sram_filter_reads * wb.filter,
        "sram_ofmap_write": c.sram_ofmap_writes * wb.ofmap,
        "sram_index_read": c.index_reads_bits / 8.0,
        "dram_ifmap_read": c.dram_ifmap_reads * wb.ifmap,
        "dram_filter_read": c.dram_filter_reads * wb.filter,
        "dram_ofmap_write": c.dram_ofmap_writes * wb.ofmap,
    }


def dram_bytes(c: Counts, cfg: AccelConfig) -> float:
    t = traffic_bytes(c, cfg)
    return t["dram_ifmap_read"] + t["dram_filter_read"] + t["dram_ofmap_write"]


def total_cycles(c: Counts, cfg: AccelConfig) -> float:
    """Compute and DRAM transfers overlap (double buffering): the slower one sets the time."""
    return max(c.cycles, dram_bytes(c, cfg) / bytes_per_cycle(cfg))


def energy_pj(c: Counts, cfg: AccelConfig, cycles: float | None = None) -> dict[str, float]:
    e = cfg.energy
    t = traffic_bytes(c, cfg)
    kb = cfg.sram_kb
    rd = lambda op: e.sram_pj_per_byte(getattr(kb, op), "read")  # noqa: E731
    wr = lambda op: e.sram_pj_per_byte(getattr(kb, op), "write")  # noqa: E731
    index_pj = e.index_pj_per_byte if e.index_pj_per_byte is not None else rd("ifmap")
    cycles = total_cycles(c, cfg) if cycles is None else cycles
    out = {
        "mac": c.macs * e.mac_pj,
        "rf": c.macs * e.rf_accesses_per_mac * e.rf_access_pj,
        "sram_ifmap": t["sram_ifmap_read"] * rd("ifmap"),
        "sram_filter": t["sram_filter_read"] * rd("filter"),
        "sram_ofmap": t["sram_ofmap_write"] * wr("ofmap"),
        "sram_fill": t["dram_ifmap_read"] * wr("ifmap") + t["dram_filter_read"] * wr("filter"),
        "sram_drain": t["dram_ofmap_write"] * rd("ofmap"),
        "index": t["sram_index_read"] * index_pj,
        "dram_ifmap": t["dram_ifmap_read"] * 8 * e.dram_pj_per_bit,
        "dram_filter": t["dram_filter_read"] * 8 * e.dram_pj_per_bit,
        "dram_ofmap": t["dram_ofmap_write"] * 8 * e.dram_pj_per_bit,
        # mW x cycles / MHz = 1e-3 W x 1e-6 s = 1e-9 J = 1e3 pJ
        "static": e.static_mw * cycles / cfg.clock_mhz * 1e3,
    }
    out["total"] = sum(out.values())
    return out
