"""Command line: ``python -m hwsim.to_scalesim --accel accel_configs/X.yaml --out X.cfg``.

Writes a systolic config as the SCALE-Sim v3 ``.cfg`` that runs the same dense array (array,
SRAM sizes, dataflow, bandwidth in words per cycle; ``InterfaceBandwidth: USER`` with
``interface_words_per_cycle`` for a ``bandwidth_mode: user`` config); what SCALE-Sim cannot express (fractional
kB, multi-byte words, other models) is refused with one line naming the field.
"""
from __future__ import annotations

import sys

from hwsim.config import load_config
from hwsim.interop.scalesim_cfg import to_scalesim_cfg
from hwsim.trace.errors import CliParser, cli_entry
from hwsim.trace.fileio import atomic_write_text


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="python -m hwsim.to_scalesim", description=__doc__.splitlines()[0])
    parser.add_argument("--accel", required=True, help="systolic accelerator YAML")
    parser.add_argument("--out", required=True, help="the .cfg file to write")
    args = parser.parse_args(argv)
    text = to_scalesim_cfg(load_config(args.accel), args.accel)
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
