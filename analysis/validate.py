"""Hold the cpu model against measured sparse execution:
``python -m analysis.validate --runs DIR [DIR ...] --accel accel_configs/cpu_host.yaml [--out DIR] [--sweep DIR]``.

Each DIR holds ``execution.json`` and its trace (``python -m cdg.execute``). Prints measured and
predicted speed-up per layer and network with the mean absolute percentage error and Spearman's
rank correlation (``analysis.validation``); ``--out`` writes ``validation_layers.csv``,
``validation.json`` and ``validation.html`` (the figure); ``--sweep`` also puts
``validation.json`` into a sweep directory, where ``python -m analysis.dashboard`` shows it.
"""
from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path

from analysis.validation import cross_run, summary
from analysis.validation_plot import validation_figure
from hwsim.trace.errors import CliParser, HwsimError, cli_entry
from hwsim.trace.fileio import atomic_write_json, atomic_write_text

VALIDATION_JSON = "validation.json"
COLUMNS = ("run", "layer", "gated", "path_measured", "path_predicted", "density", "measured_dense_ms",
           "measured_sparse_ms", "predicted_dense_ms", "predicted_sparse_ms", "measured_speedup",
           "predicted_speedup", "abs_pct_error")


def _f(v: float, fmt: str = ".3f") -> str:
    return format(v, fmt) if isinstance(v, float) and math.isfinite(v) else "-"


def table(records: list[dict], summ: dict) -> str:
    head = f"{'run':<24} {'layer':<18} {'path':<22} {'dens':>5} {'meas x':>7} {'pred x':>7} {'err %':>6}"
    lines = [head, "-" * len(head)]
    for r in records:
        lines.append(f"{r['run'][:24]:<24} {r['layer'][:18]:<18} {(r['path_measured'] or '-')[:22]:<22} "
                     f"{_f(r['density'], '.2f'):>5} {_f(r['measured_speedup']):>7} {_f(r['predicted_speedup']):>7} "
                     f"{_f(r['abs_pct_error'], '.1f'):>6}")
    goals = summ["goals"]
    for key in ("gated_layers", "all_layers", "networks"):
        a = summ[key]
        lines.append(f"{key:<13} n={a['n']:<4} MAPE {_f(a['mape_pct'], '.1f')} % (goal <= {goals['mape_pct_max']:.0f}), "
                     f"Spearman {_f(a['spearman'], '.2f')} (goal >= {goals['spearman_min']}), bias {_f(a['bias_pct'], '+.1f')} %")
    return "\n".join(lines)


def _finite(obj):
    """NaN / inf -> None, so the JSON is strict (a network row has no density)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _csv(records: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(records)
    return buf.getvalue()


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = CliParser(prog="python -m analysis.validate", description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="directories holding execution.json and its trace")
    p.add_argument("--accel", required=True, help="a cpu config (accel_configs/cpu_host.yaml)")
    p.add_argument("--out", default=None, help="directory for validation_layers.csv, validation.json, validation.html")
    p.add_argument("--sweep", default=None, help="sweep directory whose dashboard gains the validation figure")
    args = p.parse_args(argv)
    for flag, value in (("--out", args.out), ("--sweep", args.sweep)):
        if value is not None and Path(value).exists() and not Path(value).is_dir():
            raise HwsimError(value, flag, "exists and is not a directory")
    if args.sweep is not None and not Path(args.sweep).is_dir():
        raise HwsimError(args.sweep, "--sweep", "no such directory")
    rows = [row for run in args.runs for row in cross_run(run, args.accel)]
    records = [r.as_dict() for r in rows]
    summ = summary(rows)
    print(table(records, summ))
    doc = _finite({"accel": str(args.accel), "runs": [str(r) for r in args.runs], "summary": summ, "rows": records})
    if args.out:
        out = Path(args.out)
        atomic_write_text(out / "validation_layers.csv", _csv(records))
        atomic_write_json(out / VALIDATION_JSON, doc)
        atomic_write_text(out / "validation.html", validation_figure(records, summ).to_html(include_plotlyjs=True))
        print(f"wrote {out / 'validation_layers.csv'}, {out / VALIDATION_JSON} and {out / 'validation.html'}")
    if args.sweep:
        atomic_write_json(Path(args.sweep) / VALIDATION_JSON, doc)
        print(f"wrote {Path(args.sweep) / VALIDATION_JSON} (python -m analysis.dashboard shows it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
