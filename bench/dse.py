"""Throughput of analysis.dse: a 1,000-point sweep (10 traces x 2 accelerators x a 50-point grid).

    python bench/dse.py                       # the first 10 traced runs under runs/digits_gating
    python bench/dse.py --workers 2 --runs-dir runs/digits_gating
    python bench/dse.py --synthetic           # no trained runs needed

Traces: by default the REAL traces of the first 10 traced runs (sorted by name) under ``--runs-dir``
(the digits ResNet-18 x0.25 runs, 64 mask images each). With ``--synthetic``, or when fewer than
10 traced runs exist, 10 SYNTHETIC run directories are written to a temporary directory: the
same digits-sized ResNet-18 x0.25 conv layer table (16x16 input, 20 convs, 8.76 M MACs), every 3x3 conv after the stem gated
(G=4, S=1, b=1) with i.i.d. masks of density U(0.2, 0.6), 64 images, written with
hwsim.trace.synthetic (the one synthetic-trace generator). Each run counts once, the output directory is fresh (no resume), and the
time includes process start-up of the workers and the CSV rebuild. Prints points per second.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from analysis import dse
from analysis.runs import find_run_dirs, has_trace
from hwsim.networks import resnet18_cifar
from hwsim.trace import GateGrid, LayerSpec, load_trace
from hwsim.trace.synthetic import gate_3x3_convs, iid_masks, write_synthetic_trace

ROOT = Path(__file__).resolve().parents[1]

ACCELS = ["accel_configs/systolic_32x32_os.yaml", "accel_configs/systolic_32x32_os_compact.yaml"]
GRID = {"systolic": {"array.rows": [8, 16, 32, 64, 128], "dataflow": ["os", "ws"],
                     "dram.bandwidth_gb_s": [12.8, 25.6, 51.2, 102.4, 204.8]}}   # 50 designs per accel
N_RUNS = 10


def digits_resnet18() -> list[LayerSpec]:
    """ResNet-18 (CIFAR stem) at width 0.25 on 16x16 inputs: the digits runs' conv layer table
    (20 convs, 8,761,344 dense MACs, as in runs/digits_gating/*/trace)."""
    out = []
    for s in resnet18_cifar():
        if s.op == "linear":          # the digits traces hold the convs only
            continue
        c_in, h, w = s.in_shape
        c_out, ho, wo = s.out_shape
        in_shape = (c_in // 4 if c_in != 3 else 3, h // 2, w // 2)
        out_shape = (c_out // 4, ho // 2, wo // 2)
        out.append(replace(s, in_shape=in_shape, out_shape=out_shape))
    return gate_3x3_convs(out, GateGrid(G=4, S=1, b=1))


def synthetic_runs(root: Path) -> list[Path]:
    specs = digits_resnet18()
    runs = []
    for i in range(N_RUNS):
        rng = np.random.default_rng(i)
        run = root / f"synthetic_s{i}"
        run.mkdir(parents=True)
        density = rng.uniform(0.2, 0.6)
        write_synthetic_trace(run / "trace", specs, 64, rng, masks=iid_masks(density),
                              meta={"producer": "bench/dse.py", "synthetic": True})
        tr = load_trace(run / "trace")
        dense = sum(layer.spec.dense_macs for layer in tr.layers)
        eff = sum(layer.stats.effective_macs for layer in tr.layers)
        (run / "config.yaml").write_text(yaml.safe_dump({
            "model": {"arch": "resnet18", "width": 0.25}, "method": {"name": "simclr"},
            "gate": {"method": "cdg", "groups": 4, "channel_block": 1, "spatial_block": 1},
            "train": {"seed": i}}))
        (run / "summary.json").write_text(json.dumps({"dense_macs": dense, "effective_macs": eff,
                                                      "reduction": dense / eff, "linear_top1": 0.9}))
        runs.append(run)
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "digits_gating"))
    p.add_argument("--synthetic", action="store_true")
    p.add_argument("--workers", type=int, default=None, help="default: CPU count")
    p.add_argument("--ray", action="store_true", help="run on a local Ray instance instead")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_dse_") as tmp:
        tmp = Path(tmp)
        runs: list[Path] = []
        if not args.synthetic and Path(args.runs_dir).is_dir():
            runs = [r for r in sorted(find_run_dirs([args.runs_dir]), key=lambda r: r.name)
                    if has_trace(r) and (r / "summary.json").is_file()][:N_RUNS]
        source = f"real traces from {args.runs_dir}"
        if len(runs) < N_RUNS:
            runs, source = synthetic_runs(tmp / "runs"), "synthetic traces (TraceWriter)"
        grid = tmp / "grid.yaml"
        grid.write_text(yaml.safe_dump(GRID))
        accels = [str(ROOT / a) for a in ACCELS]
        t0 = time.perf_counter()
        res = dse.run_sweep([str(r) for r in runs], accels, tmp / "sweep", grid=str(grid), workers=args.workers,
                            ray=args.ray, progress=sys.stderr.isatty())
        wall = time.perf_counter() - t0
    print(f"traces: {source}: {', '.join(r.name for r in runs)}")
    print(f"{res.computed} points ({len(runs)} traces x {len(ACCELS)} accelerators x 50 grid points), "
          f"workers={args.workers or 'cpu count'}{' (ray)' if args.ray else ''}: {wall:.1f} s, "
          f"{res.computed / wall:.1f} points/s")


if __name__ == "__main__":
    main()
