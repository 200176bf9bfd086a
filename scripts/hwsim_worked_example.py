"""Per-layer FLOPs reduction vs the speed-up each accelerator model realises, from one trace.

    python scripts/hwsim_worked_example.py --trace runs/digits_gating/cdg_s0/trace \
        --accel accel_configs/systolic_32x32_os_compact.yaml accel_configs/sparse_pe.yaml accel_configs/gpu_a100.yaml

Prints a Markdown table: for every layer, the FLOPs reduction the trace's real masks allow
(dense MACs / needed MACs) and, per accelerator, the speed-up over the same layer with no
sparsity exploited, then the network totals and each accelerator's skip granularity per layer.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hwsim.api import simulate_trace
from hwsim.trace.errors import HwsimError, cli_entry
from hwsim.trace import load_trace


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", required=True)
    parser.add_argument("--accel", nargs="+", required=True)
    args = parser.parse_args(argv)
    trace = load_trace(args.trace)
    runs = [simulate_trace(trace, a) for a in args.accel]
    names = [Path(a).stem for a in args.accel]
    if not any(layer.spec.gate is not None for layer in trace.layers):
        raise HwsimError(args.trace, "layers", "no gated layer: nothing to compare (train with gate.method=cdg)")
    print(f"trace {args.trace}: {trace.n_mask_images} mask images; speed-up = cycles with no sparsity "
          f"exploited / cycles with the real masks (total cycles, memory included)\n")
    print("| layer | FLOPs reduction | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for i, layer in enumerate(runs[0].layers):
        cells = [f"{r.layers[i].speedup:.2f}x" for r in runs]
        print(f"| {layer.name} | {layer.flops_reduction:.2f}x | " + " | ".join(cells) + " |")
    totals = [r.totals() for r in runs]
    print(f"| **total** | **{totals[0]['flops_reduction']:.2f}x** | "
          + " | ".join(f"**{t['speedup']:.2f}x**" for t in totals) + " |")
    print("\nRealised share of the gated-off work (cycle saving / FLOPs-proportional saving): "
          + ", ".join(f"{n} {100 * t['zero_work_removed']:.1f} %" for n, t in zip(names, totals)))
    print("\n| accelerator | mode | skip granularity (first gated layer) |\n|---|---|---|")
    first = next(i for i, layer in enumerate(runs[0].layers) if layer.gated)
    for n, r in zip(names, runs):
        print(f"| {n} | {r.mode} | {r.layers[first].granularity} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
