"""Training-step and evaluation throughput per SSL method and gate method, all in one run.

    python bench/train_step.py                       # default digits-sized model on CPU (+ CUDA if present)
    python bench/train_step.py --arch resnet18 --width 1.0 --image-size 32 --batch 256 --device cuda
    python bench/train_step.py --gates none cdg cgnet fbs dgnet --methods simclr
    python bench/train_step.py --compile             # torch.compile the model, as train.compile does
    python bench/train_step.py --channels-last       # channels_last on CPU too (cdg.train uses it on CUDA only)
    python bench/train_step.py --gates none cdg cdg-eager   # CDG with and without its fused CPU kernels

One step = two-view augmentation + forward + backward + optimiser step (+ EMA update),
the same code path as ``cdg.train`` (gated runs: with the gates on at their target).
"eval" is a no-grad forward of the backbone in eval mode (real hard masks for gated
runs). The ratio columns compare each gate method with the dense model measured in the
same run, interleaved step by step so machine noise hits both alike.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import torch

from cdg.run.builders import build_augment, build_model
from cdg.config import load_config
from cdg.gating.controller import GateController
from cdg.gating.native import loader
from cdg.methods.registry import METHODS
from cdg.run.optim import build_optimizer


EAGER_SUFFIX = "-eager"  # e.g. cdg-eager: CDG with its fused CPU kernels off (cdg.gating.native)


@contextlib.contextmanager
def eager_gates():
    previous = os.environ.get(loader.ENV_SWITCH)
    os.environ[loader.ENV_SWITCH] = "0"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[loader.ENV_SWITCH]
        else:
            os.environ[loader.ENV_SWITCH] = previous


def gate_overrides(gate: str) -> list[str]:
    if gate == "none":
        return []
    method = gate.removesuffix(EAGER_SUFFIX)
    return [f"gate.method={method}", "gate.target_reduction=2", "gate.warmup_epochs=0", "gate.ramp_epochs=0"]


def build_step(method: str, gate: str, args, device: torch.device):
    """(train step, eval forward) closures for one SSL method and gate method."""
    cfg = load_config(
        None,
        [
            f"method.name={method}",
            f"model.arch={args.arch}",
            f"model.width={args.width}",
            f"data.image_size={args.image_size}",
            f"train.batch_size={args.batch}",
            "train.epochs=100",
            *gate_overrides(gate),
        ],
    )
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    controller = GateController(cfg, model, steps_per_epoch=1) if gate != "none" else None
    cuda = device.type == "cuda"
    channels_last = cuda or args.channels_last  # cdg.train: train.channels_last applies on CUDA
    if channels_last:
        model.to(memory_format=torch.channels_last)
    augment = build_augment(cfg, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).to(device)
    optimizer = build_optimizer(model, cfg.optim, cfg.train.batch_size)
    forward = torch.compile(model) if args.compile else model  # as cdg.train does with train.compile
    stored = args.image_size if args.image_size < 64 else int(args.image_size * 256 / 224)
    images = torch.randint(0, 256, (args.batch, 3, stored, stored), dtype=torch.uint8, device=device)

    eval_images = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
    if channels_last:
        eval_images = eval_images.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        model.train()
        with torch.no_grad():
            v1, v2 = augment(images)
        if channels_last:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        if controller is not None:
            controller.begin_step(epoch=50.0)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            out = forward(v1, v2)
        loss = out.loss
        if controller is not None:
            gate_loss, _ = controller.loss(epoch=50.0)
            controller.end_step()
            loss = loss + gate_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if controller is not None:
            controller.after_step()
        model.momentum_update(0.5)

    @torch.no_grad()
    def evaluate() -> None:
        model.backbone.eval()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            model.backbone(eval_images)

    if gate.endswith(EAGER_SUFFIX):
        return _under(eager_gates, step), _under(eager_gates, evaluate)
    return step, evaluate


def _under(context, fn):
    def wrapped() -> None:
        with context():
            fn()
    return wrapped


def timed(fn, cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_method(method: str, gates: list[str], args, device: torch.device) -> dict[str, tuple[float, float]]:
    """Median (train step, eval forward) seconds per gate method, interleaved round-robin."""
    cuda = device.type == "cuda"
    closures = {gate: build_step(method, gate, args, device) for gate in gates}
    for _ in range(args.warmup):
        for step, evaluate in closures.values():
            step()
            evaluate()
    train_t: dict[str, list[float]] = {g: [] for g in gates}
    eval_t: dict[str, list[float]] = {g: [] for g in gates}
    for _ in range(args.steps):
        for gate, (step, evaluate) in closures.items():
            train_t[gate].append(timed(step, cuda))
            eval_t[gate].append(timed(evaluate, cuda))
    return {g: (statistics.median(train_t[g]), statistics.median(eval_t[g])) for g in gates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (train.compile)")
    parser.add_argument("--channels-last", action="store_true",
                        help="channels_last memory format on CPU as well (always on for CUDA, as in cdg.train)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--gates", nargs="*", default=["none", "cdg"],
                        help="gate methods (none = dense; cdg-eager = cdg without its fused CPU kernels)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    print(
        f"{args.arch} x{args.width}, {args.image_size}px, batch {args.batch}, median of {args.steps} steps, "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        + (", channels_last on CPU" if args.channels_last else "")
    )
    gates = args.gates if "none" in args.gates else ["none", *args.gates]
    print(f"{'device':7} {'method':8} {'gate':9} {'train ms':>9} {'images/s':>9} {'x dense':>8} {'eval ms':>8} {'x dense':>8}")
    for device_name in devices:
        device = torch.device(device_name)
        for method in args.methods:
            results = bench_method(method, gates, args, device)
            dense_train, dense_eval = results["none"]
            for gate, (train_s, eval_s) in results.items():
                print(f"{device_name:7} {method:8} {gate:9} {train_s * 1e3:9.1f} {args.batch / train_s:9.0f} "
                      f"{train_s / dense_train:8.2f} {eval_s * 1e3:8.1f} {eval_s / dense_eval:8.2f}")


if __name__ == "__main__":
    main()
