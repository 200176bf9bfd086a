"""hwsim's ``bandwidth_mode: user`` against SCALE-Sim v3 in USER bandwidth mode (docs/hwsim.md).

    python bench/scalesim_user_bandwidth.py                                  # runs SCALE-Sim: ~2-5 min
    python bench/scalesim_user_bandwidth.py --json tests/data/scalesim_user_bw.json
    python bench/scalesim_user_bandwidth.py --speed       # hwsim only: user mode on a ResNet-50 layer

Grid: 6 layers (3x3 and 1x1, strides 1 and 2, one whose (H - kh) is not a multiple of the
stride, a linear layer) x OS/WS/IS x two arrays x interface bandwidths 1, 4 and 16 words per
cycle, with 1 kB SRAMs so that the interface, not the array, sets the pace. Per case: total
cycles, stall cycles and the DRAM words SCALE-Sim reports, next to hwsim's. Prints a markdown
table per (dataflow, array), then the one known disagreement (a SCALE-Sim topology row whose
(H - kh) is not a multiple of the stride, read from the CSV itself; not counted in the verdict,
see docs/hwsim.md, "Bandwidth stalls"); ``--json`` writes SCALE-Sim's figures (and the grid) atomically, which
``tests/hwsim/models/systolic/test_user_bandwidth.py`` compares hwsim against without SCALE-Sim.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path

from hwsim.config import parse_config
from hwsim.interop.scalesim_cfg import to_scalesim_cfg
from hwsim.interop.scalesim_ref import run_scalesim, run_scalesim_files
from hwsim.interop.scalesim_topology import load_topology
from hwsim.models.systolic.bandwidth import user_bandwidth
from hwsim.models.systolic.counts import dense_layer_counts
from hwsim.trace.fileio import atomic_write_json
from hwsim.workload import conv_layer, linear_layer, lower

# (name, kind, args): conv args = in_h, in_w, in_channels, out_channels, kernel, stride, padding
LAYERS = [
    ("c3x3_s1", "conv", [10, 10, 8, 12, 3, 1, 1]),
    ("c3x3_s2", "conv", [16, 16, 6, 16, 3, 2, 1]),
    ("c3x3_s2_odd", "conv", [16, 16, 4, 8, 3, 2, 0]),      # (16 - 3) is not a multiple of 2
    ("c1x1_s2", "conv", [9, 9, 16, 10, 1, 2, 0]),
    ("c1x1_s1", "conv", [6, 6, 24, 16, 1, 1, 0]),
    ("fc", "linear", [48, 10]),
]
ARRAYS = [(8, 8), (16, 4)]
BANDWIDTHS = [1, 4, 16]
SRAM_KB = 1
FIGURES = ("cycles", "stall_cycles", "ifmap_dram_reads", "filter_dram_reads", "ofmap_dram_writes")
MINE = {"cycles": "cycles", "stall_cycles": "stall_cycles", "ifmap_dram_reads": "dram_ifmap_reads",
        "filter_dram_reads": "dram_filter_reads", "ofmap_dram_writes": "dram_ofmap_writes"}


def layer(name: str, kind: str, args: list[int]):
    return conv_layer(*args, name=name) if kind == "conv" else linear_layer(*args, name=name)


def config(rows: int, cols: int, dataflow: str, bandwidth: int, sram_kb: float = SRAM_KB):
    """The grid's systolic config: SCALE-Sim's counting, 1-byte words, USER bandwidth."""
    return parse_config(dict(
        name=f"u{rows}x{cols}", model="systolic", array=dict(rows=rows, cols=cols), dataflow=dataflow,
        accumulation="scalesim", bandwidth_mode="user", interface_words_per_cycle=bandwidth, clock_mhz=1000,
        sram_kb=dict(ifmap=sram_kb, filter=sram_kb, ofmap=sram_kb), word_bytes=dict(ifmap=1, filter=1, ofmap=1),
        dram=dict(bandwidth_gb_s=1000), sparse=dict(mode="skip"), energy=dict(table="horowitz_45nm")), "user_bw")


def hwsim_figures(spec, cfg) -> dict[str, int]:
    c = dense_layer_counts(lower(spec), cfg)
    return {k: int(getattr(c, MINE[k])) for k in FIGURES}


ODD_ROW = "odd_18px_k3_s2, 18, 18, 3, 3, 3, 8, 2,"   # SCALE-Sim's output rows reach input row 18 (of 0..17)


def raw_topology_case() -> list[dict]:
    """SCALE-Sim on the CSV row as written vs hwsim on the layer its topology reader makes."""
    out = []
    print("\nraw topology row", repr(ODD_ROW), "on 8x8: cycles, stalls, ifmap DRAM words of SCALE-Sim, "
          "of hwsim, and of hwsim with the words past input row 17 as holes (as SCALE-Sim has them):")
    for df in ("os", "ws", "is"):
        for bw in (1, 4):
            cfg = config(8, 8, df, bw)
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                (work / "run.cfg").write_text(to_scalesim_cfg(cfg, "user_bw"))
                (work / "topo.csv").write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                                               "Channels, Num Filter, Strides,\n" + ODD_ROW + "\n")
                ref = run_scalesim_files(work / "run.cfg", work / "topo.csv", work, ["odd"])[0]
                spec = load_topology(work / "topo.csv")[0]
            mine = hwsim_figures(spec, cfg)
            holes = user_bandwidth(lower(spec).gemm, cfg, given=(18, 18))
            print(f"  {df} B={bw}: SCALE-Sim {ref.cycles}, {ref.stall_cycles}, {ref.ifmap_dram_reads}; "
                  f"hwsim {mine['cycles']}, {mine['stall_cycles']}, {mine['ifmap_dram_reads']}; "
                  f"with holes {holes.cycles}, {holes.stall_cycles}, {holes.dram_ifmap_reads}")
            out.append({"dataflow": df, "rows": 8, "cols": 8, "bandwidth": bw, "cycles": ref.cycles,
                        "stall_cycles": ref.stall_cycles, "ifmap_dram_reads": ref.ifmap_dram_reads})
    return out


def speed() -> int:
    """hwsim's user mode on ResNet-50's 56x56x64->64 3x3 conv, 32x32 array, 64 kB SRAMs, B = 8."""
    spec = conv_layer(56, 56, 64, 64, 3, 1, 1, name="resnet50_3x3_56px")
    for df in ("os", "ws", "is"):
        user, calc = config(32, 32, df, 8, sram_kb=64), config(32, 32, df, 8, sram_kb=64).with_overrides(
            bandwidth_mode="calc", interface_words_per_cycle=None)
        dense_layer_counts(lower(spec), user)                       # compile (numba cache) and warm up
        t0 = time.perf_counter()
        c = dense_layer_counts(lower(spec), user)
        t1 = time.perf_counter()
        base = dense_layer_counts(lower(spec), calc)
        t2 = time.perf_counter()
        print(f"{df}: user {t1 - t0:.2f} s ({int(c.cycles):,} cycles, {int(c.stall_cycles):,} stalls), "
              f"calc {t2 - t1:.2f} s ({int(base.cycles):,} cycles)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write SCALE-Sim's figures and the grid here")
    parser.add_argument("--speed", action="store_true", help="time hwsim's user mode only (no SCALE-Sim)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.speed:
        return speed()
    specs = [layer(*row) for row in LAYERS]
    cases, ok = [], True
    print("| dataflow | array | bandwidth (words/cycle) | layers exact (cycles, stalls) | DRAM exact | stall cycles (SCALE-Sim, all layers) |")
    print("|---|---|---|---|---|---|")
    for df in ("os", "ws", "is"):
        for rows, cols in ARRAYS:
            for bw in BANDWIDTHS:
                cfg = config(rows, cols, df, bw)
                with tempfile.TemporaryDirectory() as tmp:
                    ref = run_scalesim(specs, cfg, tmp)
                exact = dram = stalls = 0
                for spec, r in zip(specs, ref):
                    theirs = {k: int(getattr(r, k)) for k in FIGURES}
                    mine = hwsim_figures(spec, cfg)
                    exact += (mine["cycles"], mine["stall_cycles"]) == (theirs["cycles"], theirs["stall_cycles"])
                    dram += all(mine[k] == theirs[k] for k in FIGURES[2:])
                    stalls += theirs["stall_cycles"]
                    cases.append({"dataflow": df, "rows": rows, "cols": cols, "bandwidth": bw, "layer": spec.name,
                                  **theirs})
                ok &= exact == dram == len(specs)
                print(f"| {df} | {rows}x{cols} | {bw} | {exact}/{len(specs)} | {dram}/{len(specs)} | {stalls} |")
    print(f"\nall cases agree: {ok}")
    raw = raw_topology_case()
    if args.json:
        atomic_write_json(args.json, {
            "source": "SCALE-Sim v3 (PyPI scalesim) in InterfaceBandwidth USER mode, run by "
                      "bench/scalesim_user_bandwidth.py through hwsim/interop/scalesim_ref.py",
            "scalesim_version": version("scalesim"), "sram_kb": SRAM_KB,
            "note": "cycles = SCALE-Sim's Total Cycles + 1; DRAM figures are its DETAILED_ACCESS_REPORT words",
            "layers": [{"name": n, "kind": k, "args": a} for n, k, a in LAYERS], "cases": cases,
            "raw_topology_row": {"row": ODD_ROW, "given_input": [18, 18], "cases": raw}})
        print(f"wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
