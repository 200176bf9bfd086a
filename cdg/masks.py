"""Where each method computes, as pictures: ``python -m cdg.masks --run runs/X [--run runs/Y ...] --images 4 --out DIR``.

For each run, ``DIR/<run name>.png`` is a grid with one row per test image (the first ``--images``
of the evaluation split, the ones whose masks the run's trace stores) and one column for the
input plus one per stage with gated layers: the input (as the evaluation transform shows it to
the network) tinted by that stage's gate map, red where the conditional part ran for every
output channel, blue where for none (``hwsim.trace.mask_maps``: fraction of channels on per
pixel, averaged over the stage's gated layers). It reads the run's ``config.yaml`` (for the data
set) and ``trace/``, not the checkpoint. Several ``--run`` give one picture per method.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from cdg.data.augment import build_eval_transform
from cdg.run.builders import load_sources
from cdg.run.rundir import load_run_config
from hwsim.trace import load_trace
from hwsim.trace.errors import CliParser, UserError, cli_entry, exit_zero
from hwsim.trace.fileio import atomic_write_bytes
from hwsim.trace.layout import TRACE_DIR
from hwsim.trace.mask_maps import stage_gate_maps

TILE_MIN = 64  # tiles are upscaled (nearest) by an integer factor to at least this many pixels
ON, OFF = (1.0, 0.15, 0.1), (0.1, 0.3, 1.0)  # tint where every / no channel computed
TINT = 0.55  # weight of the tint against the image


def tint(images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W images in [0, 1] blended with the colour of ``maps`` (N x h x w in [0, 1],
    upsampled nearest to H x W): (1 − TINT) image + TINT (m ON + (1 − m) OFF)."""
    m = F.interpolate(maps[:, None].float(), size=images.shape[-2:], mode="nearest")
    on = torch.tensor(ON).view(1, 3, 1, 1)
    off = torch.tensor(OFF).view(1, 3, 1, 1)
    return (1 - TINT) * images + TINT * (m * on + (1 - m) * off)


def mask_grid(images: torch.Tensor, stage_maps: dict[str, torch.Tensor]) -> torch.Tensor:
    """uint8 3 x H' x W' picture: a row per image, the input then one tinted column per stage."""
    from torchvision.utils import make_grid

    n, _, h, w = images.shape
    scale = max(1, -(-TILE_MIN // min(h, w)))
    cols = [images] + [tint(images, m) for m in stage_maps.values()]
    tiles = torch.stack(cols, dim=1).flatten(0, 1)  # row-major: image 0's columns first
    tiles = F.interpolate(tiles, scale_factor=scale, mode="nearest")
    grid = make_grid(tiles.clamp(0, 1), nrow=len(cols), padding=2, pad_value=1.0)
    return (grid * 255).round().to(torch.uint8)


def input_images(cfg, count: int) -> torch.Tensor:
    """The first ``count`` evaluation images in [0, 1], as the evaluation transform crops them."""
    test = load_sources(cfg).test
    if count > len(test):
        raise UserError(f"--images {count}: the evaluation split has only {len(test)} images")
    images, _ = next(test.iter_batches([torch.arange(count)]))
    return build_eval_transform(cfg.data.image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))(images)


def render_run(run_dir: Path, count: int, out_dir: Path, data_dir: str | None = None) -> tuple[Path, list[str]]:
    """Write ``out_dir/<run name>.png`` for one run; returns the file and the stage columns."""
    from torchvision.io import encode_png

    cfg = load_run_config(run_dir)
    if data_dir is not None:
        cfg.data.data_dir = data_dir
    maps = stage_gate_maps(load_trace(run_dir / TRACE_DIR), count)
    images = input_images(cfg, count)
    grid = mask_grid(images, {stage: torch.from_numpy(m) for stage, m in maps.items()})
    path = out_dir / f"{run_dir.resolve().name}.png"
    atomic_write_bytes(path, encode_png(grid).numpy().tobytes())
    return path, list(maps)


@cli_entry
def main(argv: list[str] | None = None) -> list[Path]:
    parser = CliParser(prog="python -m cdg.masks", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", required=True, help="run directory with a trace (repeatable)")
    parser.add_argument("--images", type=int, default=4, help="test images, one row each (default 4)")
    parser.add_argument("--out", type=Path, required=True, help="folder for <run name>.png")
    parser.add_argument("--data-dir", default=None, help="override data.data_dir")
    args = parser.parse_args(argv)
    if args.images < 1:
        raise UserError(f"--images must be >= 1, got {args.images}")
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out}: exists and is not a folder")
    names = [run_dir.resolve().name for run_dir in args.run]
    if len(set(names)) < len(names):
        raise UserError(f"--run: two runs share a directory name ({', '.join(names)}); their PNGs would collide")
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for run_dir in args.run:
        path, stages = render_run(run_dir, args.images, args.out, args.data_dir)
        print(f"wrote {path}: {args.images} images x (input, {', '.join(stages)})")
        written.append(path)
    return written


console = exit_zero(main)  # the console script (pyproject [project.scripts])


if __name__ == "__main__":
    main()
    sys.exit(0)
