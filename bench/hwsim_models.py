"""Speed of every hwsim model: each accel_configs/*.yaml on a synthetic gated CIFAR ResNet-18
(or, with ``--network``, any built-in table, e.g. the 224 px ResNet-50) trace, by number of images and of layers, with numba compile time measured separately.

    python bench/hwsim_models.py                            # 100 / 300 / 1000 images, every config
    python bench/hwsim_models.py --images 1000 --configs 'sparse_pe*'
    python bench/hwsim_models.py --network resnet50_imagenet --images 1000 --no-compile   # ImageNet scale

Generic over configs: a model registered in hwsim.models.registry (and its YAML in accel_configs/)
shows up without changes here. The trace is SYNTHETIC (no trained cdg model): every 3x3 conv
after the stem is gated (G=4, S=8, b=2) with spatially smooth random saliency thresholded per
image to a density from U(0.3, 0.7); input-activation masks (iid, density 0.5) are stored for
the first 32 images of every conv, as a training run stores a sample. Written with
hwsim.trace.synthetic (the one synthetic-trace generator), loaded once; times below are simulate_trace only, after a warm-up run.
Compile time: a fresh interpreter with an empty numba cache minus one with the cache filled,
running each model once on a 4-image trace.
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hwsim import api
from hwsim.networks import get_network
from hwsim.trace import GateGrid, expand_gate_blocks, load_trace
from hwsim.trace.synthetic import gate_3x3_convs, smooth_masks, write_synthetic_trace

ROOT = Path(__file__).resolve().parents[1]
ACT_IMAGES = 32


def write_trace(path: Path, n: int, seed: int = 0, network: str = "resnet18_cifar") -> None:
    specs = gate_3x3_convs(get_network(network), GateGrid(G=4, S=8, b=2))
    write_synthetic_trace(path, specs, n, np.random.default_rng(seed), masks=smooth_masks, act_images=ACT_IMAGES,
                          meta={"model": network, "synthetic": True, "note": "bench/hwsim_models.py"},
                          overwrite=True)


COLD = """
import sys, time
t0 = time.perf_counter()
from hwsim import api
api.simulate_trace({trace!r}, api.load_config({accel!r}))
print(time.perf_counter() - t0)
"""


def compile_seconds(accel: Path, trace: Path, cache: Path) -> tuple[float, float]:
    """(fresh interpreter with an empty numba cache, same with the cache filled), seconds."""
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-c", COLD.format(trace=str(trace), accel=str(accel))]
    out = [float(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.split()[-1])
           for _ in range(2)]
    return out[0], out[1]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="100,300,1000", help="comma-separated image counts")
    ap.add_argument("--configs", default="*", help="glob over accel_configs/*.yaml stems")
    ap.add_argument("--no-compile", action="store_true", help="skip the fresh-interpreter compile measurement")
    ap.add_argument("--network", default="resnet18_cifar", help="built-in layer table (hwsim.networks) to gate")
    args = ap.parse_args(argv)
    counts = sorted(int(v) for v in args.images.split(","))
    paths = [p for p in sorted((ROOT / "accel_configs").glob("*.yaml")) if fnmatch.fnmatch(p.stem, args.configs)]
    if not paths:
        print(f"no accel_configs/*.yaml matches {args.configs!r}")
        return 2
    cfgs = {p.stem: api.load_config(p) for p in paths}
    work = Path(tempfile.mkdtemp(prefix="hwsim_models_"))
    try:
        traces = {}
        for n in counts + [4]:
            t0 = time.perf_counter()
            write_trace(work / f"t{n}", n, network=args.network)
            traces[n] = load_trace(work / f"t{n}")
            if n != 4:
                print(f"trace {n} images: written + loaded in {time.perf_counter() - t0:.1f} s")

        if not args.no_compile:
            print("\nnumba compile (once per model; later runs load the on-disk cache):")
            seen = {}
            for stem, cfg in cfgs.items():
                if cfg.model not in seen:
                    cold, warm = compile_seconds(ROOT / "accel_configs" / f"{stem}.yaml", work / "t4", work / "nb")
                    seen[cfg.model] = cold
                    print(f"  {cfg.model:10s} fresh interpreter, 4-image trace: {cold:6.1f} s empty cache, "
                          f"{warm:5.1f} s cache filled -> compile ~{cold - warm:.1f} s")

        print("\nsimulate_trace seconds (warm), by images:")
        print(f"  {'config':28s} {'model':10s}" + "".join(f"{n:>9d}" for n in counts) + "   us/(image*layer)")
        for stem, cfg in cfgs.items():
            api.simulate_trace(traces[4], cfg)                        # warm-up: compile / load cache
            secs = [timed(lambda n=n: api.simulate_trace(traces[n], cfg)) for n in counts]
            n_layers = len(traces[counts[-1]].layers)
            per = secs[-1] / (counts[-1] * n_layers) * 1e6
            print(f"  {stem:28s} {cfg.model:10s}" + "".join(f"{s:9.2f}" for s in secs) + f"   {per:8.1f}")

        n = counts[-1]
        tr = traces[n]
        specs = tr.specs
        masks = {lay.spec.name: expand_gate_blocks(lay.gate_blocks, lay.spec)
                 for lay in tr.layers if lay.gate_blocks is not None}
        acts = {lay.spec.name: lay.act_masks for lay in tr.layers if lay.act_masks is not None}
        marks = sorted({max(1, len(specs) // 4), len(specs) // 2, len(specs)})
        print(f"\nsimulate_layers seconds on the first L layers, {n} images (masks pre-expanded):")
        print(f"  {'config':28s}" + "".join(f"{'L=' + str(m):>9s}" for m in marks))
        for stem, cfg in cfgs.items():
            row = []
            for m in marks:
                names = {s.name for s in specs[:m]}
                row.append(timed(lambda m=m, names=names: api.simulate_layers(
                    specs[:m], cfg, masks={k: v for k, v in masks.items() if k in names},
                    act_masks={k: v for k, v in acts.items() if k in names})))
            print(f"  {stem:28s}" + "".join(f"{s:9.2f}" for s in row))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
