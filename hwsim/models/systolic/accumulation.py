"""Where a systolic array's partial sums live: the ``faithful`` accumulation model (the default).

SCALE-Sim counts every row fold's partial sums of a weight- or input-stationary mapping as OFMAP
SRAM writes that are all drained to DRAM and never read back, which is not what an array does:
for a 16x16x128->256 3x3 layer on a 32x32 WS array that is 2.36 MB of DRAM output traffic where
the layer has 65,536 output bytes. ``accumulation: scalesim`` keeps that counting (it is what the
SCALE-Sim agreement is checked on); ``faithful`` counts what the hardware does:

- **OS**: each output accumulates in its PE and is written to the OFMAP SRAM once, then to DRAM
  once (no per-fold skew slots, no padding of partial write-buffer lines). Compute cycles and
  the write-buffer stalls are SCALE-Sim's (the same words leave the array at the same times).
- **WS / IS**: row folds over the reduction run back to back for one column tile (the loop order
  of the dense mapping), so a tile's partial sums stay in the OFMAP SRAM: the first fold writes
  them, every later fold reads them back and writes them again, and only the final outputs go to
  DRAM, once. When the tile's partial sums (E x cols words for WS, M x cols for IS) do not fit in
  the OFMAP SRAM, the fraction that does not fit is spilled: written to DRAM and read back at
  every fold boundary. Transfers overlap compute (the roofline of ``hwsim.costs``), so there are
  no write-buffer stalls here; bandwidth limits show in ``total_cycles``.
"""
from __future__ import annotations

from hwsim.models.systolic.config import SystolicConfig
from hwsim.workload import Gemm


def spill_fraction(g: Gemm, cfg: SystolicConfig) -> float:
    """Share of one column tile's partial sums that the OFMAP SRAM cannot hold (WS, IS)."""
    cols = cfg.array.cols
    tile = g.E * min(cols, g.M) if cfg.dataflow == "ws" else g.M * min(cols, g.E)
    capacity = cfg.sram_words("ofmap")
    return max(0.0, 1.0 - capacity / tile) if tile > 0 else 0.0


def psum_traffic(g: Gemm, cfg: SystolicConfig, sram_writes: float) -> dict[str, float]:
    """SRAM and DRAM OFMAP traffic (words) of a WS/IS layer whose partial-sum writes total
    ``sram_writes``: each of the E x M outputs has one first write, every further write was
    preceded by a read of the same partial sum; spills move ``spill_fraction`` of those reads
    through DRAM (written out, read back)."""
    outputs = g.E * g.M
    reads = max(sram_writes - outputs, 0.0)
    spilled = spill_fraction(g, cfg) * reads
    return {"sram_ofmap_writes": sram_writes, "sram_ofmap_reads": reads,
            "dram_ofmap_writes": outputs + spilled, "dram_ofmap_reads": spilled}


def os_sram_writes(g: Gemm) -> float:
    """OS: every output written once (the E x M results)."""
    return float(g.E * g.M)
