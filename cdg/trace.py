"""Computation accounting and runtime sparsity traces: ``python -m cdg.trace --run runs/X``.

The command line of ``cdg.tracing.measure.trace_run``: rebuilds the run's model from its last
checkpoint, measures the evaluation set and writes ``runs/X/trace/`` (see that module).
"""
from __future__ import annotations

import sys
from pathlib import Path

from cdg.run.builders import load_sources, load_trained
from cdg.run.rundir import INTERRUPTED, checkpoint_path
from cdg.tracing.measure import trace_run
from hwsim.trace.errors import CliParser, cli_entry
from hwsim.trace.layout import TRACE_DIR


@cli_entry(interrupted=INTERRUPTED)
def main(argv: list[str] | None = None) -> dict:
    parser = CliParser(prog="python -m cdg.trace", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="run directory (uses checkpoints/last.pt)")
    parser.add_argument("--images", type=int, default=None, help="images with gate masks (default: gate.trace_images)")
    parser.add_argument("--act-images", type=int, default=None, help="images with activation masks (default: gate.trace_act_images)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    parser.add_argument("--data-dir", default=None, help="override data.data_dir")
    args = parser.parse_args(argv)
    trained = load_trained(checkpoint_path(args.run), {
        "train.device": args.device,
        "data.data_dir": args.data_dir,
        "gate.trace_images": args.images,
        "gate.trace_act_images": args.act_images,
    })
    cfg, device = trained.cfg, trained.device
    backbone = trained.model.backbone.to(device)
    report = trace_run(cfg, backbone, load_sources(cfg), device, args.run, progress=cfg.train.progress)
    print(f"wrote {args.run / TRACE_DIR}: {len(report['layers'])} layers, reduction {report['reduction']:.3f}x "
          f"({report['effective_macs'] / 1e6:.2f} of {report['dense_macs'] / 1e6:.2f} MMAC per image), "
          f"{report['reduction_full']:.3f}x with input-side credit")
    return report


if __name__ == "__main__":
    main()
    sys.exit(0)
