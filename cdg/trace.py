"""Computation accounting and runtime sparsity traces: ``python -m cdg.trace --run runs/X``.

The command line of ``cdg.tracing.measure.trace_run``: rebuilds the run's model from its last
checkpoint, measures the evaluation set and writes ``runs/X/trace/`` (see that module).
``python -m cdg.trace --model torchvision:resnet50 --input-size 224 --out DIR`` writes the dense
layer table of any torchvision model instead (``cdg.tracing.any_model``), for hwsim.
"""
from __future__ import annotations

import sys
from pathlib import Path

from cdg.run.rundir import INTERRUPTED, checkpoint_path
from hwsim.trace import TraceWriter
from hwsim.trace.errors import CliParser, cli_entry, exit_zero
from hwsim.trace.layout import TRACE_DIR


@cli_entry(interrupted=INTERRUPTED)
def main(argv: list[str] | None = None) -> dict:
    parser = CliParser(prog="python -m cdg.trace", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", type=Path, help="run directory (uses checkpoints/last.pt)")
    where.add_argument("--model", help="torchvision:NAME: write that model's dense layer table (with --input-size, --out)")
    parser.add_argument("--input-size", type=int, default=None, help="--model: square input size in pixels")
    parser.add_argument("--out", default=None, help="--model: trace directory to write")
    parser.add_argument("--images", type=int, default=None, help="images with gate masks (default: gate.trace_images)")
    parser.add_argument("--act-images", type=int, default=None, help="images with activation masks (default: gate.trace_act_images)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    parser.add_argument("--data-dir", default=None, help="override data.data_dir")
    args = parser.parse_args(argv)
    if args.model is not None:
        return _model_table(parser, args)
    if args.input_size is not None or args.out is not None:
        parser.error("--input-size and --out go with --model (a run's trace goes to RUN/trace)")
    from cdg.run.builders import load_sources, load_trained  # torch: after the arguments are checked
    from cdg.tracing.measure import trace_run

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


def _model_table(parser, args) -> dict:
    if args.input_size is None or args.out is None:
        parser.error("--model needs --input-size and --out")
    if not 8 <= args.input_size <= 4096:
        parser.error(f"--input-size {args.input_size}: expected 8..4096 pixels")
    from cdg.tracing.any_model import layer_table, load_model  # torch: after the arguments are checked

    rows = layer_table(load_model(args.model), args.input_size)
    meta = {"producer": "cdg.trace --model", "model": args.model, "image_size": args.input_size, "dense": True}
    with TraceWriter(args.out, meta=meta) as writer:
        for spec in rows:
            writer.add_layer(spec)
    macs = sum(spec.dense_macs for spec in rows)
    print(f"wrote {args.out}: {len(rows)} layers of {args.model} at {args.input_size} px, {macs / 1e9:.3f} GMAC per image")
    return {"layers": len(rows), "dense_macs": macs}


console = exit_zero(main)  # the console script (pyproject [project.scripts])


if __name__ == "__main__":
    main()
    sys.exit(0)
