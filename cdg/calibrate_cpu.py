"""Calibrate hwsim's cpu model on this host: ``python -m cdg.calibrate_cpu --threads T --out FILE.yaml``.

Runs torch micro-benchmarks (the call cost of small index-building ops, GEMMs and 3x3 convs over a grid of shapes,
``index_select`` / ``index_put_`` row copies, cache and DRAM streaming copies), fits the cpu
model's parameters (``cdg.hwcal``) and writes the accelerator YAML atomically, host, torch
version, threads and date recorded in it. Never tuned on whole networks.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from cdg.hwcal.calibrate import calibrate
from hwsim.trace.errors import CliParser, UserError, cli_entry
from hwsim.trace.fileio import atomic_write_text


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="python -m cdg.calibrate_cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, required=True, help="torch intra-op threads to calibrate at")
    parser.add_argument("--out", type=Path, required=True, help="accelerator YAML to write")
    parser.add_argument("--batch", type=int, default=1, help="the config's batch (images per forward)")
    parser.add_argument("--name", default=None, help="config name (default: the file's stem)")
    parser.add_argument("--note", default="", help="a note recorded in host.note (e.g. machine load)")
    parser.add_argument("--quick", action="store_true", help="a few shapes, short budgets (a smoke test)")
    args = parser.parse_args(argv)
    if args.out.suffix not in (".yaml", ".yml"):
        raise UserError(f"--out: expected a .yaml file, got {str(args.out)!r}")
    if args.out.exists() and args.out.is_dir():
        raise UserError(f"--out: {str(args.out)!r} is a directory")
    argv_text = " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    text, fitted = calibrate(args.threads, args.batch, args.name or args.out.stem, args.quick, args.note,
                             command=f"python -m cdg.calibrate_cpu {argv_text}")
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}: op {fitted['op_us']:.2f} us, conv peak {fitted['conv']['peak_gflops']:.1f} GFLOP/s, "
          f"gemm peak {fitted['gemm']['peak_gflops']:.1f} GFLOP/s, DRAM {fitted['memory']['dram_gb_s']:.1f} GB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
