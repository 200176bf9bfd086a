"""Validation table of hwsim's dense systolic model against SCALE-Sim v3 (for docs/hwsim.md).

    python bench/validate_vs_scalesim.py

Layers x arrays x dataflows; per row: layers whose compute cycles and SRAM ifmap/filter reads
and ofmap writes are all equal, and the largest relative DRAM difference per operand.
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings

from hwsim.config import parse_config
from hwsim.interop.scalesim_ref import run_scalesim
from hwsim.models.systolic.counts import dense_layer_counts
from hwsim.workload import conv_layer, linear_layer, lower

LAYERS = [
    conv_layer(32, 32, 3, 16, 3, 1, 1, name="stem_3x3_s1"),
    conv_layer(16, 16, 16, 32, 3, 2, 1, name="3x3_s2"),
    conv_layer(16, 16, 16, 32, 1, 2, 0, name="1x1_s2_shortcut"),
    conv_layer(8, 8, 32, 48, 3, 1, 1, name="3x3_s1_nondividing"),
    conv_layer(8, 8, 48, 20, 1, 1, 0, name="1x1_s1"),
    conv_layer(7, 7, 24, 24, 3, 1, 0, name="3x3_unpadded_odd"),
    linear_layer(96, 10, name="fc"),
]
ARRAYS = [(8, 8), (16, 16), (8, 32), (32, 8)]
SRAM_KB = [(1, 1, 1), (8, 8, 4)]


def config(rows, cols, df, sram):
    return parse_config(dict(
        name=f"v{rows}x{cols}", model="systolic", array=dict(rows=rows, cols=cols), dataflow=df, accumulation="scalesim",
        clock_mhz=1000, sram_kb=dict(ifmap=sram[0], filter=sram[1], ofmap=sram[2]),
        word_bytes=dict(ifmap=1, filter=1, ofmap=1), dram=dict(bandwidth_gb_s=16), sparse=dict(mode="skip"),
        energy=dict(source="Horowitz ISSCC 2014", process_nm=45, mac_pj=0.3, rf_access_pj=0.3,
                    rf_accesses_per_mac=3, sram=[dict(kb=8, read_pj_per_byte=1.25, write_pj_per_byte=1.25)],
                    dram_pj_per_bit=20.3, static_mw=0)), "validate")


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0] + " Runs SCALE-Sim on every case: minutes.").parse_args(argv)
    warnings.simplefilter("ignore")
    print("| dataflow | array | SRAM kB (if/fil/of) | layers exact (cycles, SRAM) | max DRAM diff ifmap | filter | ofmap |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for df in ("os", "ws", "is"):
        for rows, cols in ARRAYS:
            for sram in SRAM_KB:
                cfg = config(rows, cols, df, sram)
                with tempfile.TemporaryDirectory() as tmp:
                    ref = run_scalesim(LAYERS, cfg, tmp)
                mine = [dense_layer_counts(lower(s), cfg) for s in LAYERS]
                exact = sum((c.cycles, c.sram_ifmap_reads, c.sram_filter_reads, c.sram_ofmap_writes) ==
                            (r.cycles, r.ifmap_sram_reads, r.filter_sram_reads, r.ofmap_sram_writes)
                            for c, r in zip(mine, ref))
                err = [max(abs(getattr(c, a) - getattr(r, b)) / max(getattr(r, b), 1) for c, r in zip(mine, ref))
                       for a, b in (("dram_ifmap_reads", "ifmap_dram_reads"), ("dram_filter_reads", "filter_dram_reads"),
                                    ("dram_ofmap_writes", "ofmap_dram_writes"))]
                ok &= exact == len(LAYERS) and max(err) <= 0.02
                print(f"| {df} | {rows}x{cols} | {sram[0]}/{sram[1]}/{sram[2]} | {exact}/{len(LAYERS)} | "
                      f"{err[0]:.2%} | {err[1]:.2%} | {err[2]:.2%} |")
    print(f"\nall rows agree: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
