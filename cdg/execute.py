"""Sparse execution vs dense torch: ``python -m cdg.execute --run runs/X`` or ``--synthetic ...``.

Times the sparse executor (``cdg.sparse_exec``) against the dense network, per layer and end to
end, prints the table and writes ``execution.json`` (``docs/execution.md``).
"""
from __future__ import annotations

import sys
from pathlib import Path

from hwsim.trace.errors import CliParser, cli_entry, exit_zero
from hwsim.trace.layout import EXECUTION_FILE


def parser() -> CliParser:
    p = CliParser(prog="python -m cdg.execute", description=__doc__.splitlines()[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="run directory (uses checkpoints/last.pt and its test images)")
    source.add_argument("--synthetic", action="store_true", help="a synthetic gated model (see --structure)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repetitions", type=int, default=10)
    p.add_argument("--channels-last", action="store_true", help="run both networks in channels_last")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: perf_counter; cpu: process CPU time (one CPU thread on a shared machine)")
    p.add_argument("--no-progress", action="store_true")
    g = p.add_argument_group("synthetic model")
    g.add_argument("--arch", default="resnet18")
    g.add_argument("--width", type=float, default=1.0)
    g.add_argument("--stem", choices=["cifar", "imagenet"], default="imagenet")
    g.add_argument("--image-size", type=int, default=64)
    g.add_argument("--structure", default="block2", help="pixel | block<b> | channel<S>[_block<b>] | unstructured")
    g.add_argument("--density", type=float, default=None, help="conditional-path density of every gated layer")
    g.add_argument("--reduction", type=float, default=None, help="or: the backbone MAC reduction to reach")
    g.add_argument("--groups", type=int, default=4, help="G: the base path reads C_in / G channels")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", type=Path, default=None, help="output directory (trace/ and execution.json)")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> dict:
    from cdg.sparse_exec.commands import execute_run, execute_synthetic
    from cdg.sparse_exec.measure import format_table

    p = parser()
    args = p.parse_args(argv)
    common = dict(batch=args.batch, warmup=args.warmup, repetitions=args.repetitions, threads=args.threads,
                  channels_last=args.channels_last, progress=not args.no_progress, clock=args.clock)
    if args.run is not None:
        doc = execute_run(args.run, args.device, **common)
        where = args.run / EXECUTION_FILE
    else:
        if args.out is None:
            p.error("--synthetic needs --out DIR")
        density = args.density if (args.density is not None or args.reduction is not None) else 0.5
        doc = execute_synthetic(args.out, args.arch, args.width, args.stem, args.image_size, args.structure,
                                density, args.reduction, args.groups, device=args.device, seed=args.seed, **common)
        where = args.out / EXECUTION_FILE
    print(format_table(doc))
    print(f"wrote {where}")
    return doc


console = exit_zero(main)  # the console script (pyproject [project.scripts])


if __name__ == "__main__":
    main()
    sys.exit(0)
