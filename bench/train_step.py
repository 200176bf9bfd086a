"""Training-step throughput of each SSL method, all measured in one run (ratios are meaningful).

    python bench/train_step.py                       # default digits-sized model on CPU (+ CUDA if present)
    python bench/train_step.py --arch resnet18 --width 1.0 --image-size 32 --batch 256 --device cuda

One step = two-view augmentation + forward + backward + optimiser step (+ EMA update),
the same code path as ``cdg.train``. Prints a table of ms/step and images/s per method.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from cdg.components import build_augment, build_model
from cdg.config import load_config
from cdg.methods import METHODS
from cdg.optim import build_optimizer


def bench_method(method: str, args, device: torch.device) -> tuple[float, float]:
    cfg = load_config(
        None,
        [
            f"method.name={method}",
            f"model.arch={args.arch}",
            f"model.width={args.width}",
            f"data.image_size={args.image_size}",
            f"train.batch_size={args.batch}",
        ],
    )
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model.to(memory_format=torch.channels_last)
    augment = build_augment(cfg, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).to(device)
    optimizer = build_optimizer(model, cfg.optim, cfg.train.batch_size)
    stored = args.image_size if args.image_size < 64 else int(args.image_size * 256 / 224)
    images = torch.randint(0, 256, (args.batch, 3, stored, stored), dtype=torch.uint8, device=device)

    def step() -> None:
        with torch.no_grad():
            v1, v2 = augment(images)
        if cuda:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            out = model(v1, v2)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        model.momentum_update(0.5)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return median * 1e3, args.batch / median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    print(
        f"{args.arch} x{args.width}, {args.image_size}px, batch {args.batch}, median of {args.steps} steps, "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    print(f"{'device':8} {'method':8} {'ms/step':>10} {'images/s':>10}")
    for device_name in devices:
        device = torch.device(device_name)
        for method in args.methods:
            ms, ips = bench_method(method, args, device)
            print(f"{device_name:8} {method:8} {ms:10.1f} {ips:10.0f}")


if __name__ == "__main__":
    main()
