"""Time hwsim and SCALE-Sim v3 on the dense CIFAR ResNet-18 and check they agree.

    python bench/hwsim_vs_scalesim.py                      # 32x32, OS/WS/IS (about 5 min)
    python bench/hwsim_vs_scalesim.py --layers 3 --dataflows os   # a quick look

For every dataflow: SCALE-Sim runs once (wall time); hwsim runs ``--repeat`` times after a
warm-up (numba compiled and cached) and the best time is kept. Agreement per layer: compute
cycles and SRAM reads/writes must be equal, DRAM traffic within 2 %.
Prints a table and, with ``--json``, writes the figures (atomically).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from hwsim.config import load_config
from hwsim.trace.fileio import atomic_write_json
from hwsim.networks import resnet18_cifar
from hwsim.interop.scalesim_ref import run_scalesim
from hwsim.models.systolic.counts import dense_layer_counts
from hwsim.workload import lower

EXACT = (("cycles", "cycles"), ("sram_ifmap_reads", "ifmap_sram_reads"),
         ("sram_filter_reads", "filter_sram_reads"), ("sram_ofmap_writes", "ofmap_sram_writes"))
DRAM = (("dram_ifmap_reads", "ifmap_dram_reads"), ("dram_filter_reads", "filter_dram_reads"),
        ("dram_ofmap_writes", "ofmap_dram_writes"))


def hwsim_network(specs, cfg):
    return [dense_layer_counts(lower(s), cfg) for s in specs]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accel", default=str(Path(__file__).resolve().parents[1] / "accel_configs/systolic_32x32_os.yaml"))
    ap.add_argument("--dataflows", default="os,ws,is")
    ap.add_argument("--layers", type=int, default=0, help="only the first N layers (0: all)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    base = load_config(args.accel)
    specs = resnet18_cifar()
    specs = specs[: args.layers] if args.layers else specs
    print(f"CIFAR ResNet-18, {len(specs)} layers, dense, one image; {base.array.rows}x{base.array.cols} array, "
          f"SRAM kB ifmap/filter/ofmap {base.sram_kb.ifmap:g}/{base.sram_kb.filter:g}/{base.sram_kb.ofmap:g}")
    print(f"{'df':<3} {'scalesim_s':>10} {'hwsim_ms':>9} {'ratio':>8} {'exact':>7} {'dram_max_err':>12} {'cycles':>12}")
    out = {"accel": base.name, "layers": len(specs), "dataflows": {}}
    total_ref = total_hw = 0.0
    all_ok = True
    for df in args.dataflows.split(","):
        cfg = base.with_overrides(dataflow=df, accumulation="scalesim")
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            ref = run_scalesim(specs, cfg, tmp)
            t_ref = time.perf_counter() - t0
        hwsim_network(specs, cfg)  # warm-up: numba compile / cache load
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            mine = hwsim_network(specs, cfg)
            best = min(best, time.perf_counter() - t0)
        exact = sum(all(getattr(c, a) == getattr(r, b) for a, b in EXACT) for c, r in zip(mine, ref))
        errs = [abs(getattr(c, a) - getattr(r, b)) / max(getattr(r, b), 1) for c, r in zip(mine, ref) for a, b in DRAM]
        max_err = max(errs)
        ok = exact == len(specs) and max_err <= 0.02
        all_ok &= ok
        total_ref += t_ref
        total_hw += best
        cycles = sum(c.cycles for c in mine)
        print(f"{df:<3} {t_ref:>10.1f} {best * 1e3:>9.2f} {t_ref / best:>8.0f} {exact:>3}/{len(specs):<3} "
              f"{max_err:>11.3%} {cycles:>12,.0f}")
        out["dataflows"][df] = {"scalesim_s": t_ref, "hwsim_s": best, "ratio": t_ref / best,
                                "layers_exact": exact, "dram_max_rel_err": max_err, "cycles": cycles,
                                "per_layer": [{"layer": s.name, "hwsim": c.to_dict(), "scalesim": vars(r)}
                                              for s, c, r in zip(specs, mine, ref)]}
    print(f"all  {total_ref:>10.1f} {total_hw * 1e3:>9.2f} {total_ref / total_hw:>8.0f}   "
          f"agreement {'OK' if all_ok else 'FAILED'} (cycles + SRAM exact, DRAM within 2%)")
    out.update(total_scalesim_s=total_ref, total_hwsim_s=total_hw, ratio=total_ref / total_hw, agree=all_ok)
    if args.json:
        atomic_write_json(args.json, out)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
