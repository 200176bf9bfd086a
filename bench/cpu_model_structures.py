"""What the cpu model predicts for the sparse executor, per gate structure, density and batch
(SIMULATED: no execution; measured numbers come from python -m cdg.execute and
python -m analysis.validate).

    python bench/cpu_model_structures.py [--accel accel_configs/cpu_host.yaml] [--network resnet18_cifar]
        [--batches 1 32] [--densities 0.3 0.5 0.7] [--images 8] [--G 4]

Every 3x3 conv after the stem of a built-in full-width network is gated (``--G``, default 4: a
quarter of the input channels in the base path, so density 1/3 is a 2x FLOPs reduction) with i.i.d. decisions of the given density on its decision grid
(``hwsim.trace.synthetic``, seed 0); prints the FLOPs reduction, the predicted speed-up of the
network (dense torch / executor) and the share of the executor's time in gather, GEMM,
scatter-add and per-op calls, and how many gated layers take each path.
"""
from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from hwsim.api import simulate_trace
from hwsim.config import load_config
from hwsim.models.cpu.model import PATHS
from hwsim.networks import NETWORKS, get_network
from hwsim.trace import GateGrid
from hwsim.trace.synthetic import iid_masks, write_synthetic_trace

STRUCTURES = {"pixel": (None, 1), "block 2x2": (None, 2), "block 4x4": (None, 4),
              "channel block S=16, 2x2": (16, 2), "unstructured": (1, 1)}   # S (None: C_out), b


def gated(specs, S, b, G):
    out = []
    for s in specs:
        if s.op == "conv" and s.kernel == (3, 3) and s.name != "conv1":
            s = replace(s, gate=GateGrid(G=G, S=S or s.out_shape[0], b=b).resolved(s.in_shape[0]))
        out.append(s)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accel", default="accel_configs/cpu_host.yaml")
    p.add_argument("--network", default="resnet18_cifar", choices=sorted(NETWORKS))
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--densities", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--G", type=int, default=4, help="1/G of the input channels in the base path")
    args = p.parse_args()
    base = load_config(args.accel)
    print(f"{args.network}, {args.accel} ({base.host.cpu_model}, calibrated at {base.calibrated_threads} threads)")
    print(f"{'structure':<26} {'density':>7} {'batch':>5} {'FLOPs red.':>10} {'pred. speed-up':>14} "
          f"{'gather':>6} {'gemm':>6} {'scatter':>7} {'calls':>6}  paths of the gated layers")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (S, b) in STRUCTURES.items():
            specs = gated(get_network(args.network), S, b, args.G)
            for d in args.densities:
                trace = Path(tmp) / f"{name}_{d}".replace(" ", "_").replace("=", "")
                write_synthetic_trace(trace, specs, args.images, np.random.default_rng(0), masks=iid_masks(d))
                for batch in args.batches:
                    run = simulate_trace(trace, base.with_overrides(batch=batch))
                    t = run.totals()
                    parts = {k: sum(r.figures.counters.get(f"{k}_us", 0.0) for r in run.layers)
                             for k in ("gather", "gemm", "scatter", "overhead", "base")}
                    total = sum(parts.values())
                    chosen = Counter(PATHS[int(r.figures.counters["path"])] for r in run.layers if r.gated)
                    print(f"{name:<26} {d:>7.1f} {batch:>5} {t['flops_reduction']:>10.2f} {t['speedup']:>14.2f} "
                          + " ".join(f"{parts[k] / total:>{w}.0%}" for k, w in
                                     (("gather", 6), ("gemm", 6), ("scatter", 7), ("overhead", 6)))
                          + "  " + ", ".join(f"{k} {v}" for k, v in sorted(chosen.items())))


if __name__ == "__main__":
    main()
