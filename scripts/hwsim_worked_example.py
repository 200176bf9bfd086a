"""Per-layer FLOPs reduction vs the speed-up each accelerator model realises, from one trace.

    python scripts/hwsim_worked_example.py --trace runs/digits_gating/cdg_s0/trace \
        --accel accel_configs/systolic_32x32_os_compact.yaml accel_configs/sparse_pe.yaml accel_configs/gpu_a100.yaml

Prints a Markdown table: for every layer, the FLOPs reduction the trace's real masks allow
(dense MACs / needed MACs) and, per accelerator, the speed-up over the same layer with no
sparsity exploited, then the network totals and each accelerator's skip granularity per layer.
``--measured DIR`` (a directory holding the ``execution.json`` of ``python -m cdg.execute`` on
the same trace) adds the MEASURED speed-up of the CPU sparse executor (dense median / sparse
median) as the last column; a layer it did not time shows ``-``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.validation import read_execution
from hwsim.api import simulate_trace
from hwsim.trace.errors import HwsimError, cli_entry
from hwsim.trace import load_trace


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", required=True)
    parser.add_argument("--accel", nargs="+", required=True)
    parser.add_argument("--measured", default=None, help="directory with execution.json (python -m cdg.execute)")
    args = parser.parse_args(argv)
    measured, measured_total = {}, None
    if args.measured:
        ex = read_execution(Path(args.measured))
        measured = {x["name"]: x["dense_ms"]["median"] / x["sparse_ms"]["median"] for x in ex["layers"]}
        measured_total = ex["total"]["dense_ms"]["median"] / ex["total"]["sparse_ms"]["median"]
    trace = load_trace(args.trace)
    runs = [simulate_trace(trace, a) for a in args.accel]
    names = [Path(a).stem for a in args.accel]
    if not any(layer.spec.gate is not None for layer in trace.layers):
        raise HwsimError(args.trace, "layers", "no gated layer: nothing to compare (train with gate.method=cdg)")
    print(f"trace {args.trace}: {trace.n_mask_images} mask images; speed-up = cycles with no sparsity "
          f"exploited / cycles with the real masks (total cycles, memory included)\n")
    extra = ["measured: CPU executor"] if args.measured else []
    print("| layer | FLOPs reduction | " + " | ".join(names + extra) + " |")
    print("|---|---|" + "---|" * (len(names) + len(extra)))
    for i, layer in enumerate(runs[0].layers):
        cells = [f"{r.layers[i].speedup:.2f}x" for r in runs]
        if args.measured:
            cells.append(f"{measured[layer.name]:.2f}x" if layer.name in measured else "-")
        print(f"| {layer.name} | {layer.flops_reduction:.2f}x | " + " | ".join(cells) + " |")
    totals = [r.totals() for r in runs]
    tail = [f"**{measured_total:.2f}x**"] if args.measured else []
    print(f"| **total** | **{totals[0]['flops_reduction']:.2f}x** | "
          + " | ".join([f"**{t['speedup']:.2f}x**" for t in totals] + tail) + " |")
    print("\nRealised share of the gated-off work (cycle saving / FLOPs-proportional saving): "
          + ", ".join(f"{n} {100 * t['zero_work_removed']:.1f} %" for n, t in zip(names, totals)))
    print("\n| accelerator | mode | skip granularity (first gated layer) |\n|---|---|---|")
    first = next(i for i, layer in enumerate(runs[0].layers) if layer.gated)
    for n, r in zip(names, runs):
        print(f"| {n} | {r.mode} | {r.layers[first].granularity} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
