"""Cost of the base/conditional input-channel split of a gated conv, per layer shape, in one run.

    python bench/split_conv.py              # ResNet-18 3x3 shapes: width 1 (batch 32, 32 px), 1/4 (batch 256, 16 px)
    python bench/split_conv.py --groups 2 --threads 4
    python bench/split_conv.py --parts      # each partial conv's forward, input and weight gradient alone

A gated conv (CDG, CGNet) computes conv(x[:, :C_b], W[:, :C_b]) and conv(x[:, C_b:], W[:, C_b:])
instead of conv(x, W): the same MACs, but two conv calls, and the CPU conv kernels copy each
channel slice to a contiguous buffer. This prints, per shape and memory format, the forward and
forward+backward time of the dense conv and of the split pair (gate excluded), interleaved
call by call so that machine noise hits both alike. It isolates the part of the gating cost
that ``bench/train_step.py`` cannot attribute.

``--parts`` splits that further: the forward, the input gradient (dx) and the weight gradient
(dw) of the dense conv, the base conv (C_b input channels) and the conditional conv, each on
contiguous inputs (so without the slice copies), to show which kernel pays for small channel
counts.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

# (batch, channels, height): the 3x3 convs of each ResNet-18 stage (C_in = C_out, stride 1)
SHAPES = [
    (32, 64, 32), (32, 128, 16), (32, 256, 8), (32, 512, 4),  # width 1, CIFAR geometry
    (256, 16, 16), (256, 32, 8), (256, 64, 4), (256, 128, 2),  # width 1/4, digits geometry
]


def closures(n: int, c: int, hw: int, groups: int, fmt: torch.memory_format):
    x = torch.randn(n, c, hw, hw).contiguous(memory_format=fmt).requires_grad_()
    w = torch.randn(c, c, 3, 3).contiguous(memory_format=fmt).requires_grad_()
    grad = torch.randn(n, c, hw, hw).contiguous(memory_format=fmt)
    c_b = -(-c // groups)
    sizes = (c_b, c - c_b)

    def dense(backward: bool):
        y = F.conv2d(x, w, padding=1)
        if backward:
            torch.autograd.grad(y, (x, w), grad)

    def split(backward: bool):
        (x_b, x_c), (w_b, w_c) = x.split(sizes, 1), w.split(sizes, 1)
        y_b, y_c = F.conv2d(x_b, w_b, padding=1), F.conv2d(x_c, w_c, padding=1)
        if backward:
            torch.autograd.grad((y_b, y_c), (x, w), (grad, grad))

    return dense, split


def median_ms(fns, reps: int, backward: bool) -> list[float]:
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn(backward)
            times[i].append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


FORMATS = (("nchw", torch.contiguous_format), ("nhwc", torch.channels_last))


def cases():
    """(row label, batch, channels, height, memory format) for every format and shape."""
    for fmt_name, fmt in FORMATS:
        for n, c, hw in SHAPES:
            yield f"{fmt_name:7} {n:5d} {c:4d} {f'{hw}x{hw}':>6}", n, c, hw, fmt


def forward_ms(fns, reps: int) -> list[float]:
    """Median no-grad call times after a three-call warm-up."""
    with torch.no_grad():
        median_ms(fns, 3, backward=False)
        return median_ms(fns, reps, backward=False)


def part_closures(n: int, c: int, hw: int, groups: int, fmt: torch.memory_format):
    """forward, dx and dw of the dense, base and conditional convs, each on its own contiguous tensors."""
    c_b = -(-c // groups)
    fns = []
    for c_in in (c, c_b, c - c_b):
        x = torch.randn(n, c_in, hw, hw).contiguous(memory_format=fmt)
        w = torch.randn(c, c_in, 3, 3).contiguous(memory_format=fmt)
        grad = torch.randn(n, c, hw, hw).contiguous(memory_format=fmt)

        def forward(_backward, x=x, w=w):
            F.conv2d(x, w, padding=1)

        def gradient(mask, x=x, w=w, grad=grad):
            return lambda _backward: torch.ops.aten.convolution_backward(
                grad, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)

        fns += [forward, gradient([True, False, False]), gradient([False, True, False])]
    return fns


def print_parts(args) -> None:
    print(f"{'format':7} {'batch':>5} {'C':>4} {'HxW':>6}  " + "  ".join(
        f"{conv + ' ' + part:>10}" for conv in ("dense", "base", "cond") for part in ("fwd", "dx", "dw")) + "   (ms)")
    for label, n, c, hw, fmt in cases():
        times = forward_ms(part_closures(n, c, hw, args.groups, fmt), args.reps)
        print(f"{label}  " + "  ".join(f"{t:10.2f}" for t in times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=4, help="G: the base path reads ceil(C_in / G) channels")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parts", action="store_true",
                        help="time forward, dx and dw of the dense, base and conditional convs separately")
    args = parser.parse_args()
    if args.groups < 2:
        parser.error("--groups must be at least 2 (G = 1 has no conditional path)")
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    torch.set_num_threads(args.threads)
    print(f"3x3 convs, C_in = C_out, G = {args.groups}, median of {args.reps}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    if args.parts:
        print_parts(args)
        return
    print(f"{'format':7} {'batch':>5} {'C':>4} {'HxW':>6} {'fwd dense ms':>12} {'split':>6} "
          f"{'fwd+bwd dense ms':>16} {'split':>6}")
    for label, n, c, hw, fmt in cases():
        fns = closures(n, c, hw, args.groups, fmt)
        fwd = forward_ms(fns, args.reps)
        median_ms(fns, 2, backward=True)
        both = median_ms(fns, args.reps, backward=True)
        print(f"{label} {fwd[0]:12.2f} {fwd[1] / fwd[0]:5.2f}x {both[0]:16.2f} {both[1] / both[0]:5.2f}x")


if __name__ == "__main__":
    main()
