"""The two measurements of ``python -m cdg.execute``: a trained run (its own gates on its own test
images) and a synthetic gated model (fixed seeded masks; also writes their trace for hwsim).
Each returns the ``execution.json`` document and writes it atomically."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from hwsim.trace.errors import UserError
from hwsim.trace.fileio import atomic_write_json
from hwsim.trace.layout import EXECUTION_FILE, TRACE_DIR
from cdg.sparse_exec.measure import header, measure_backbone
from cdg.sparse_exec.synthetic import build_synthetic, density_for_reduction, draw_masks


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_counts(batch: int, warmup: int, repetitions: int, threads: int | None, clock: str = "wall") -> None:
    if clock not in ("wall", "cpu"):
        raise UserError(f"--clock: must be wall or cpu, got {clock!r}")
    for flag, value, low in (("--batch", batch, 1), ("--warmup", warmup, 0), ("--repetitions", repetitions, 1)):
        if value < low:
            raise UserError(f"{flag}: must be >= {low}, got {value}")
    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads: must be >= 1, got {threads}")
        torch.set_num_threads(threads)


def _layout(x: torch.Tensor, net: nn.Module, channels_last: bool) -> tuple[torch.Tensor, nn.Module]:
    if channels_last:
        return x.contiguous(memory_format=torch.channels_last), net.to(memory_format=torch.channels_last)
    return x, net


def execute_run(run_dir: Path, device: str, batch: int, warmup: int, repetitions: int, threads: int | None,
                channels_last: bool = False, progress: bool = True, clock: str = "wall") -> dict:
    """Measure run ``run_dir``'s trained gated backbone on its first ``batch`` test images."""
    from cdg.data.augment import build_eval_transform
    from cdg.run.builders import load_sources, load_trained
    from cdg.run.rundir import checkpoint_path

    check_counts(batch, warmup, repetitions, threads, clock)
    dev = pick_device(device)
    trained = load_trained(checkpoint_path(run_dir), {"train.device": dev.type})
    cfg = trained.cfg
    if cfg.gate.method == "none":
        raise UserError(f"{run_dir}: the run has no gates (gate.method=none): nothing to execute sparsely")
    sources = load_sources(cfg)
    transform = build_eval_transform(cfg.data.image_size, sources.train.mean, sources.train.std).to(dev)
    index = torch.arange(batch) % len(sources.test)
    images, _ = next(iter(sources.test.iter_batches([index])))
    backbone = trained.model.backbone.to(dev).eval()
    with torch.no_grad():
        x = transform(images.to(dev))
    x, backbone = _layout(x, backbone, channels_last)
    doc = header("run", dev, batch, cfg.data.image_size, warmup, repetitions, clock)
    doc.update(measure_backbone(backbone, x, warmup, repetitions, progress, clock=clock))
    doc["gate_method"] = cfg.gate.method
    doc["channels_last"] = channels_last
    atomic_write_json(run_dir / EXECUTION_FILE, doc)
    return doc


def execute_synthetic(out: Path, arch: str, width: float, stem: str, image_size: int, structure: str,
                      density: float | None, reduction: float | None, groups: int, batch: int, warmup: int,
                      repetitions: int, threads: int | None, device: str = "cpu", seed: int = 0,
                      channels_last: bool = False, progress: bool = True, write_trace: bool = True,
                      clock: str = "wall") -> dict:
    """Measure a synthetic gated model; writes ``out/trace/`` (its masks) and ``out/execution.json``."""
    check_counts(batch, warmup, repetitions, threads, clock)
    if image_size < 8:
        raise UserError(f"--image-size: must be >= 8, got {image_size}")
    if width <= 0:
        raise UserError(f"--width: must be > 0, got {width}")
    if (density is None) == (reduction is None):
        raise UserError("give exactly one of --density and --reduction")
    if reduction is not None and reduction < 1:
        raise UserError(f"--reduction: must be >= 1, got {reduction}")
    dev = pick_device(device)
    net = build_synthetic(arch, width, stem, structure, groups, seed)
    if reduction is not None:
        density = density_for_reduction(net, image_size, reduction)
    draw_masks(net, image_size, batch, density, seed)
    x = torch.randn(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed + 1))
    net, x = net.to(dev), x.to(dev)
    if write_trace:
        _write_synthetic_trace(out / TRACE_DIR, net, x, image_size, structure, density, seed, progress)
    x, net = _layout(x, net, channels_last)
    doc = header("synthetic", dev, batch, image_size, warmup, repetitions, clock)
    doc.update(measure_backbone(net, x, warmup, repetitions, progress, clock=clock))
    doc.update({"arch": arch, "width": width, "stem": stem, "structure": structure, "groups": groups,
                "density_requested": density, "mask_images": batch, "seed": seed, "channels_last": channels_last})
    if not write_trace:
        doc["trace"] = None
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / EXECUTION_FILE, doc)
    return doc


class _Batch:
    """A source of exactly the images ``x`` (already transformed), for ``cdg.tracing.measure``."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def __len__(self) -> int:
        return self.x.shape[0]

    def iter_batches(self, batches, num_workers: int = 0, pin_memory: bool = False):
        for index in batches:
            index = torch.as_tensor(index, device=self.x.device)
            yield self.x.index_select(0, index), torch.zeros(len(index), dtype=torch.int64)


def _write_synthetic_trace(path: Path, net: nn.Module, x: torch.Tensor, image_size: int, structure: str,
                           density: float, seed: int, progress: bool) -> None:
    from cdg.models.resnet import conv_graph
    from cdg.tracing.measure import measure, write_trace

    n = x.shape[0]
    tallies = measure(net, _Batch(x), nn.Identity(), x.device, image_size, n, n, batch_size=n, progress=progress)
    meta = {"producer": "cdg.execute --synthetic", "model": f"{net.arch}_{net.stem_type}", "dataset": "synthetic",
            "split": "synthetic", "image_size": image_size, "gate_method": "cdg", "structure": structure,
            "density": density, "seed": seed}
    write_trace(path, tallies, conv_graph(net), meta)
