"""Command line: ``python -m hwsim.run --accel accel_configs/X.yaml --trace runs/R/trace``.

Prints a per-layer table and totals (cycles, time, energy, DRAM bytes, utilisation, speed-up
and energy saving vs the same trace run dense) and writes CSV + JSON to ``--out``.
Input mistakes exit with code 2 and one line naming the file and the field.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hwsim.api import simulate_layers, simulate_network, simulate_trace
from hwsim.interop.scalesim_topology import load_topology
from hwsim.config import load_config
from hwsim.trace.errors import CliParser, HwsimError, cli_entry
from hwsim.networks import NETWORKS
from hwsim.report import format_granularity, format_table, write_outputs


_Parser = CliParser  # one line, exit code 2


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m hwsim.run", description=__doc__.splitlines()[0])
    p.add_argument("--accel", required=True, help="accelerator YAML (accel_configs/*.yaml) or a SCALE-Sim .cfg")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--trace", help="trace directory written by cdg (runs/<name>/trace)")
    src.add_argument("--network", choices=sorted(NETWORKS), help="built-in dense layer table")
    src.add_argument("--topology", help="SCALE-Sim topology CSV (conv or GEMM), dense")
    p.add_argument("--dense", action="store_true", help="simulate the trace's layer table without gating")
    p.add_argument("--dataflow", choices=("os", "ws", "is"), help="override a systolic config's dataflow")
    p.add_argument("--sparse-mode", choices=("gate", "skip", "compact"), help="override a systolic config's sparse.mode")
    p.add_argument("--out", help="directory for hwsim_layers.csv and hwsim.json")
    p.add_argument("--quiet", action="store_true", help="print totals only")
    p.add_argument("--granularity", action="store_true",
                   help="also print, per layer, the skip granularity and the share of gated-off work it realised")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.accel)
    changes = {}
    if (args.dataflow or args.sparse_mode) and cfg.model != "systolic":
        raise HwsimError(args.accel, "--dataflow" if args.dataflow else "--sparse-mode",
                         f"applies to systolic configs only, this one is model {cfg.model!r}")
    if args.dataflow:
        changes["dataflow"] = args.dataflow
    if args.sparse_mode:
        sparse = cfg.sparse.model_dump()
        sparse["mode"] = args.sparse_mode
        if args.sparse_mode == "compact" and not sparse["index_bits"]:
            raise HwsimError(args.accel, "sparse.index_bits", "--sparse-mode compact needs index_bits > 0 in the config")
        changes["sparse"] = sparse
    if changes:
        cfg = cfg.with_overrides(**changes)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise HwsimError(args.out, "--out", "exists and is not a directory")
    if args.trace:
        run = simulate_trace(args.trace, cfg, dense=args.dense)
    elif args.topology:
        run = simulate_layers(load_topology(args.topology), cfg, source=args.topology)
    else:
        run = simulate_network(args.network, cfg)
    table = format_table(run)
    print("\n".join(table.splitlines()[-1:]) if args.quiet else table)
    if args.granularity:
        print("\n" + format_granularity(run))
    if args.out:
        csv_path, json_path = write_outputs(run, args.out)
        print(f"wrote {csv_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
