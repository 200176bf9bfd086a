"""Issue 16's goal table: full-width ResNet-18 at 2x fewer backbone MACs, sparse executor vs dense torch.

    python bench/sparse_executor.py                               # 128 px, ImageNet stem, batch 1 and 32
    python bench/sparse_executor.py --image-size 64 --batches 1 --structures block2 block4
    python bench/sparse_executor.py --clock wall --threads 2      # wall clock (an idle machine)

Synthetic models (``cdg.sparse_exec.synthetic``: random weights, seeded masks); G = 4 (the base
path reads a quarter of the input channels); the conditional density that gives the requested
reduction of the whole backbone's conv MACs is computed and printed. Both networks run in
channels_last (torch's faster CPU layout for these convs). Then a profile of one spatial-gather
layer: base conv vs gather vs GEMM vs scatter.
"""
from __future__ import annotations

import argparse
import time

import torch

from cdg.sparse_exec.gather import active_pixels, expand_blocks, gather_patches, padded_nhwc, scatter_add
from cdg.sparse_exec.measure import measure_backbone
from cdg.sparse_exec.network import build_sparse, executors, layer_inputs
from cdg.sparse_exec.synthetic import build_synthetic, density_for_reduction, draw_masks

GOAL = 1.5


def model(structure, args, batch):
    net = build_synthetic("resnet18", 1.0, args.stem, structure, args.groups, args.seed)
    density = density_for_reduction(net, args.image_size, args.reduction)
    draw_masks(net, args.image_size, batch, density, args.seed)
    x = torch.randn(batch, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(args.seed))
    return net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last), density


def stage_profile(args, batch, clock):
    """ms of each stage of the spatial_gather path, per gated layer, summed over the network."""
    net, x, _ = model("block2", args, batch)
    sparse = build_sparse(net)
    inputs = layer_inputs(sparse, x)
    totals = {"base conv": 0.0, "decisions": 0.0, "pad+gather": 0.0, "GEMM": 0.0, "scatter": 0.0, "dense conv": 0.0}

    def timed(key, fn, reps=3):
        fn()
        start = clock()
        for _ in range(reps):
            out = fn()
        totals[key] += (clock() - start) / reps * 1e3
        return out

    with torch.no_grad():
        for name, ex in executors(sparse):
            layer, xin = ex.layer, inputs[name]
            c_b, s, p, k = layer.base_channels, layer.stride[0], layer.padding[0], layer.kernel_size[0]
            timed("dense conv", lambda: torch.nn.functional.conv2d(xin, layer.weight, None, s, p))
            y = timed("base conv", lambda: torch.nn.functional.conv2d(
                xin[:, :c_b].contiguous(memory_format=torch.channels_last), ex.w_base, None, s, p))
            out_hw = tuple(y.shape[-2:])
            g = timed("decisions", lambda: layer.fixed_decisions(y.shape[0], out_hw) != 0)
            pixels = active_pixels(expand_blocks(g[:, 0], 2, 2, out_hw))
            xc = xin[:, c_b:]
            cols = timed("pad+gather", lambda: gather_patches(padded_nhwc(xc, p), pixels, tuple(xc.shape[-2:]),
                                                               out_hw, k, s, p))
            values = timed("GEMM", lambda: cols @ ex.w_gemm)
            timed("scatter", lambda: scatter_add(y.clone(), pixels, values))
    return totals


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--stem", choices=["cifar", "imagenet"], default="imagenet")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--structures", nargs="+", default=["block2", "block4", "pixel", "channel8", "unstructured"])
    ap.add_argument("--reduction", type=float, default=2.0)
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="cpu")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-profile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"ResNet-18 x1.0, {args.stem} stem, {args.image_size} px, G={args.groups}, {args.reduction}x fewer backbone "
          f"MACs, channels_last, {args.threads} thread(s), {args.clock} clock, median of {args.repetitions}")
    print(f"{'structure':<14} {'batch':>5} {'density':>7} {'exec MACs':>9} {'dense ms':>9} {'sparse ms':>9} "
          f"{'speed-up':>8} {'goal':>5}  paths")
    for batch in args.batches:
        for structure in args.structures:
            net, x, density = model(structure, args, batch)
            doc = measure_backbone(net, x, args.warmup, args.repetitions, progress=False, clock=args.clock)
            t = doc["total"]
            paths = sorted({row["path"] for row in doc["layers"] if row["path"] != "dense"})
            goal = "yes" if t["speedup"] >= GOAL else f"{t['speedup'] / GOAL - 1:+.0%}"
            print(f"{structure:<14} {batch:5d} {density:7.3f} {t['executed_macs'] / t['dense_macs']:9.3f} "
                  f"{t['dense_ms']['median']:9.2f} {t['sparse_ms']['median']:9.2f} {t['speedup']:8.2f} {goal:>5}  "
                  f"{','.join(paths)}", flush=True)
    if not args.no_profile:
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        for batch in args.batches:
            totals = stage_profile(args, batch, clock)
            print(f"profile, block2, batch {batch}, spatial_gather stages summed over the gated layers (ms): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in totals.items()))


if __name__ == "__main__":
    main()
