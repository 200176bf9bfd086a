"""Speed of hwsim on a 1,000-image gated CIFAR ResNet-18 trace, and its numba compile time.

    python bench/hwsim_gated_trace.py                  # 1,000 images, OS/WS/IS
    python bench/hwsim_gated_trace.py --images 100

The trace is SYNTHETIC (no trained cdg model is involved): every 3x3 conv after the stem is
gated (G=4, S=8, b=2) with spatially smooth random saliency maps thresholded per image to a
density drawn from U(0.3, 0.7) (hwsim.trace.synthetic, the one synthetic-trace generator). It is
written through hwsim.trace.TraceWriter, so the figures also cover writing, validating and
loading a trace of that size.
Cold compile time is measured in a fresh interpreter with an empty numba cache directory.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hwsim import api
from hwsim.networks import resnet18_cifar
from hwsim.trace import GateGrid, load_trace
from hwsim.trace.synthetic import gate_3x3_convs, smooth_masks, write_synthetic_trace

ROOT = Path(__file__).resolve().parents[1]


def write_trace(path: Path, n: int, seed: int = 0) -> None:
    specs = gate_3x3_convs(resnet18_cifar(), GateGrid(G=4, S=8, b=2))
    write_synthetic_trace(path, specs, n, np.random.default_rng(seed), masks=smooth_masks,
                          meta={"model": "resnet18_cifar", "synthetic": True,
                                "note": "bench/hwsim_gated_trace.py random smooth masks"}, overwrite=True)


COLD = """
import time
t0 = time.perf_counter()
from hwsim import api
cfg = api.load_config({accel!r})
for df in ("os", "ws", "is"):
    api.simulate_trace({trace!r}, cfg.with_overrides(dataflow=df))
print(time.perf_counter() - t0)
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--accel", default=str(ROOT / "accel_configs/systolic_32x32_os.yaml"))
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hwsim_bench_"))
    try:
        trace = work / "trace"
        t0 = time.perf_counter()
        write_trace(trace, args.images)
        t_write = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in trace.rglob("*") if p.is_file())
        t0 = time.perf_counter()
        tr = load_trace(trace)
        t_load = time.perf_counter() - t0
        print(f"synthetic gated trace: {args.images} images, {size / 1e6:.2f} MB on disk, "
              f"written in {t_write:.2f} s, validated + loaded in {t_load:.2f} s")
        cfg = api.load_config(args.accel)
        for df in ("os", "ws", "is"):
            c = cfg.with_overrides(dataflow=df)
            api.simulate_trace(tr, c)  # warm (compiled, cached)
            t0 = time.perf_counter()
            run = api.simulate_trace(tr, c)
            dt = time.perf_counter() - t0
            tot = run.totals()
            print(f"{df}: {dt:.2f} s for {args.images} images ({cfg.sparse.mode}); "
                  f"MACs {tot['macs'] / tot['dense_macs']:.3f} of dense, speed-up {tot['speedup']:.3f}, "
                  f"energy saving {tot['energy_saving']:.1%}")
        env = {**os.environ, "NUMBA_CACHE_DIR": str(work / "numba_cache")}
        cmd = [sys.executable, "-c", COLD.format(accel=args.accel, trace=str(trace))]
        cold = float(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.split()[-1])
        warm = float(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.split()[-1])
        print(f"fresh interpreter, OS+WS+IS: {cold:.1f} s with an empty numba cache (compiles), "
              f"{warm:.1f} s with the cache filled; compilation ~{cold - warm:.1f} s, once")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
