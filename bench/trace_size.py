"""Size and write time of a full-width ResNet-18 (CIFAR geometry, 32x32) CDG trace.

    python bench/trace_size.py --images 1000 --act-images 64

Builds ResNet-18 at width 1.0 with CDG gates on every 3x3 conv after the stem (random
initialisation, so the masks are close to incompressible: a worst case for size), runs
``--images`` digits images upscaled to 32x32 through ``cdg.tracing.measure.measure`` and writes the trace
with ``cdg.tracing.measure.write_trace``. Prints the bytes on disk per part of the trace. Keep it with
``--out DIR`` and time the simulator on it:
``python -m hwsim.run --accel accel_configs/systolic_32x32_os.yaml --trace DIR --quiet``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from cdg.run.builders import build_eval_augment, build_model, load_sources
from cdg.config import load_config
from cdg.models.resnet import conv_graph
from cdg.tracing.measure import measure, write_trace


class Subset:
    """The first ``n`` images of a source (same interface as the data sources)."""

    def __init__(self, source, n: int):
        self.source, self.n = source, min(n, len(source))

    def __len__(self) -> int:
        return self.n

    def iter_batches(self, batches, **kwargs):
        return self.source.iter_batches(batches, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--act-images", type=int, default=64)
    parser.add_argument("--channel-block", default="1")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=None, help="keep the trace here (e.g. to time hwsim on it)")
    args = parser.parse_args()
    cfg = load_config(None, ["data.image_size=32", f"model.width={args.width}", "gate.method=cdg",
                             "gate.target_reduction=2", f"gate.channel_block={args.channel_block}"])
    torch.manual_seed(0)
    backbone = build_model(cfg).backbone
    sources = load_sources(cfg)
    source = Subset(sources.train, args.images)
    transform = build_eval_augment(cfg, sources.train.mean, sources.train.std)
    start = time.perf_counter()
    tallies = measure(backbone, source, transform, torch.device("cpu"), 32, args.images, args.act_images,
                      batch_size=100, progress=False)
    measured = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = args.out or Path(tmp) / "trace"
        start = time.perf_counter()
        write_trace(path, tallies, conv_graph(backbone), {"bench": "trace_size"})
        written = time.perf_counter() - start
        masks = sum(f.stat().st_size for f in (path / "masks").iterdir())
        total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    print(f"ResNet-18 x{args.width} CIFAR geometry, CDG S={args.channel_block}, {len(source)} images with gate masks, "
          f"{min(args.act_images, len(source))} with activation masks")
    print(f"{'part':16} {'MB':>8}")
    print(f"{'mask files':16} {masks / 1e6:8.2f}")
    print(f"{'whole trace':16} {total / 1e6:8.2f}")
    print(f"measure {measured:.1f} s, write {written:.1f} s")


if __name__ == "__main__":
    main()
