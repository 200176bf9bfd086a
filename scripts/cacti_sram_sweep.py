"""Run a CACTI 7 binary over a range of SRAM sizes and write per-byte access energies as JSON.

    python scripts/cacti_sram_sweep.py --cacti /tmp/cacti_build/cacti --out tests/data/cacti7_45nm_sram.json \
        --source "CACTI 7.0 source from the hwcomponents-cacti 1.0.40 wheel, built with make opt"
    python scripts/cacti_sram_sweep.py --check tests/data/cacti7_45nm_sram.json --table horowitz_cacti7_45nm

CACTI itself is not part of this repository: build it from its public source and pass the
binary (it is run from its own folder, where it finds ``tech_params/``). Every size is one
``cache type "ram"`` (scratchpad, no tags) UCA array with one read-write port, one bank and a
fixed access width (``--block-bytes``, 8 = one 64-bit word, the access Horowitz's ISSCC 2014
SRAM figures are for); the other options follow the CACTI configuration of Accelergy's CACTI
plug-in (``hwcomponents-cacti`` 1.0.40, ``default_cfg.cfg``). The JSON records the full
configuration template, CACTI's version banner and the binary's SHA-256, so
``hwsim/energy_tables/*.yaml`` fits can be traced to it (tests/hwsim/test_energy_scaling.py).
``--check`` prints how closely a shared energy table prices the sweep's sizes, at the table's
own sizes and at the others (held out), under each ``sram_scaling``; no CACTI needed.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hwsim.models.base import ENERGY_TABLES, Energy  # noqa: E402
from hwsim.trace.errors import HwsimError, cli_entry  # noqa: E402
from hwsim.trace.fileio import atomic_write_text  # noqa: E402

# Options every size shares. {size}, {block}, {bus_bits}, {tech_um} are filled per run.
CFG_TEMPLATE = """\
-size (bytes) {size}
-block size (bytes) {block}
-associativity 1
-read-write port 1
-exclusive read port 0
-exclusive write port 0
-single ended read ports 0
-UCA bank count 1
-technology (u) {tech_um}
-output/input bus width {bus_bits}
-cache type "ram"
-tag size (b) "default"
-page size (bits) 0
-burst length 8
-internal prefetch width 8
-Data array cell type - "itrs-lstp"
-Data array peripheral type - "itrs-lstp"
-Tag array cell type - "itrs-lstp"
-Tag array peripheral type - "itrs-lstp"
-operating temperature (K) 300
-access mode (normal, sequential, fast) - "fast"
-design objective (weight delay, dynamic power, leakage power, cycle time, area) 0:0:1000000:0:0
-deviate (delay, dynamic power, leakage power, cycle time, area) 20:10:100000:100:100
-NUCAdesign objective (weight delay, dynamic power, leakage power, cycle time, area) 100:100:0:0:100
-NUCAdeviate (delay, dynamic power, leakage power, cycle time, area) 10:10000:10000:10000:10000
-Optimize ED or ED^2 (ED, ED^2, NONE): "ED^2"
-Cache model (NUCA, UCA)  - "UCA"
-NUCA bank count 0
-Wire signaling (fullswing, lowswing, default) - "Global_30"
-Wire inside mat - "semi-global"
-Wire outside mat - "semi-global"
-Interconnect projection - "normal"
-Core count 1
-Cache level (L2/L3) - "L2"
-Add ECC - "false"
-Print level (DETAILED, CONCISE) - "CONCISE"
-Print input parameters - "false"
-Force cache config - "false"
-Ndwl 1
-Ndbl 1
-Nspd 0
-Ndcm 1
-Ndsam1 0
-Ndsam2 0
-Array Power Gating - "false"
-WL Power Gating - "false"
-CL Power Gating - "false"
-Bitline floating - "false"
-Interconnect Power Gating - "false"
-Power Gating Performance Loss 0.01
-dram_type "DDR3"
-io state "WRITE"
-addr_timing 1.0
-mem_density 4 Gb
-bus_freq 800 MHz
-duty_cycle 1.0
-activity_dq 1.0
-activity_ca 0.5
-num_dq 72
-num_dqs 18
-num_ca 25
-num_clk 2
-num_mem_dq 2
-mem_data_width 8
-rtt_value 10000
-ron_value 34
-tflight_value
-num_bobs 1
-capacity 80
-num_channels_per_bob 1
-first metric "Cost"
-second metric "Bandwidth"
-third metric "Energy"
-DIMM model "ALL"
-mirror_in_bob "F"
"""

# CSV columns of CACTI's ``<infile>.out`` (leading space included, as CACTI writes them).
COLUMNS = {
    "read_nj": " Dynamic read energy (nJ)",
    "write_nj": " Dynamic write energy (nJ)",
    "access_ns": " Access time (ns)",
    "cycle_ns": " Random cycle time (ns)",
    "leakage_mw": " Standby leakage per bank(mW)",
    "area_mm2": " Area (mm2)",
}
BANNER = re.compile(r"CACTI \(version ([^)]*)\)")


def render_cfg(size_bytes: int, block: int, node_nm: float) -> str:
    return CFG_TEMPLATE.format(size=size_bytes, block=block, bus_bits=block * 8, tech_um=node_nm / 1000)


def run_one(cacti: Path, kb: int, block: int, node_nm: float, work: Path) -> dict:
    """One CACTI run; the per-access energies it reports, and per byte of the access width."""
    cfg = work / f"sram_{kb}kb.cfg"
    cfg.write_text(render_cfg(kb * 1024, block, node_nm))
    proc = subprocess.run([str(cacti.resolve()), "-infile", str(cfg)], cwd=cacti.parent,
                          capture_output=True, text=True)
    out = Path(str(cfg) + ".out")
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        raise HwsimError(str(cacti), f"{kb} kB", f"CACTI exited {proc.returncode}: {tail[0]}")
    row = list(csv.DictReader(out.read_text().splitlines()))[-1]
    vals = {k: float(row[c]) for k, c in COLUMNS.items()}
    banner = BANNER.search(proc.stdout)
    return {
        "kb": kb,
        "read_pj_per_access": vals["read_nj"] * 1e3,
        "write_pj_per_access": vals["write_nj"] * 1e3,
        "read_pj_per_byte": vals["read_nj"] * 1e3 / block,
        "write_pj_per_byte": vals["write_nj"] * 1e3 / block,
        "access_ns": vals["access_ns"],
        "cycle_ns": vals["cycle_ns"],
        "leakage_mw": vals["leakage_mw"],
        "area_mm2": vals["area_mm2"],
        "_version": banner.group(1) if banner else None,
    }


def sweep(cacti: Path, sizes_kb: list[int], block: int, node_nm: float, jobs: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="cacti_sweep_") as tmp:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            return list(pool.map(lambda kb: run_one(cacti, kb, block, node_nm, Path(tmp)), sizes_kb))


def table_accuracy(doc: dict, table: str, scaling: str) -> dict[str, dict[str, float]]:
    """Relative error of ``table`` (priced with ``scaling``) against the sweep ``doc``, over
    reads and writes: ``max`` and ``mean`` of |table / CACTI - 1| at the table's sizes and at
    the held-out ones."""
    energy = Energy(table=table, sram_scaling=scaling)
    own = {p.kb for p in energy.sram}
    groups: dict[str, list[float]] = {"at_table_sizes": [], "held_out": []}
    for pt in doc["points"]:
        for kind in ("read", "write"):
            err = abs(energy.sram_pj_per_byte(pt["kb"], kind) / pt[f"{kind}_pj_per_byte"] - 1)
            groups["at_table_sizes" if pt["kb"] in own else "held_out"].append(err)
    return {name: {"n": len(v), "max": max(v), "mean": sum(v) / len(v)} for name, v in groups.items() if v}


def check(path: Path, table: str) -> int:
    known = sorted(t.stem for t in ENERGY_TABLES.glob("*.yaml"))
    if table not in known:
        raise HwsimError("--table", table, f"unknown energy table (known: {', '.join(known)})")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HwsimError(str(path), "(file)", f"not a readable sweep JSON ({exc})") from None
    for scaling in ("log_linear", "power_law"):
        for name, r in table_accuracy(doc, table, scaling).items():
            print(f"{table} {scaling:<10} {name:<14} n={r['n']:<3} max {100 * r['max']:.2f} %  "
                  f"mean {100 * r['mean']:.2f} %")
    return 0


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cacti", type=Path, help="a built CACTI 7 binary (run from its folder)")
    p.add_argument("--out", type=Path, help="JSON to write")
    p.add_argument("--source", help="where the CACTI source came from (recorded in the JSON)")
    p.add_argument("--check", type=Path, metavar="SWEEP_JSON", help="compare --table with this sweep instead")
    p.add_argument("--table", default="horowitz_cacti7_45nm", help="energy table for --check")
    p.add_argument("--sizes-kb", nargs="+", type=int, default=[2 ** i for i in range(15)],
                   help="SRAM sizes in kB (1024 bytes); default 1 .. 16384")
    p.add_argument("--block-bytes", type=int, default=8, help="access width in bytes (default 8 = 64 bit)")
    p.add_argument("--node-nm", type=float, default=45.0)
    p.add_argument("--jobs", type=int, default=1, help="CACTI runs at once")
    args = p.parse_args(argv)
    if args.check is not None:
        return check(args.check, args.table)
    for flag in ("cacti", "out", "source"):
        if getattr(args, flag) is None:
            raise HwsimError(f"--{flag}", "(missing)", "required to run a sweep (or give --check)")
    if not args.cacti.is_file():
        raise HwsimError("--cacti", str(args.cacti), "no such file")
    if any(kb < 1 for kb in args.sizes_kb) or args.block_bytes < 1 or args.jobs < 1:
        raise HwsimError("--sizes-kb/--block-bytes/--jobs", "values", "must be >= 1")
    points = sweep(args.cacti, sorted(set(args.sizes_kb)), args.block_bytes, args.node_nm, args.jobs)
    versions = {pt.pop("_version") for pt in points}
    doc = {
        "tool": "CACTI",
        "version": " / ".join(sorted(v for v in versions if v)) or None,
        "source": args.source,
        "binary_sha256": hashlib.sha256(args.cacti.read_bytes()).hexdigest(),
        "command": "python scripts/cacti_sram_sweep.py " + " ".join(
            a if " " not in a else repr(a) for a in (argv if argv is not None else sys.argv[1:])),
        "node_nm": args.node_nm,
        "block_bytes": args.block_bytes,
        "cfg_template": CFG_TEMPLATE,
        "note": "per_byte = CACTI's dynamic energy per access / block_bytes; one RW port, one bank, "
                "cache type ram (no tag array)",
        "points": points,
    }
    atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
    for pt in points:
        print(f"{pt['kb']:>6} kB  read {pt['read_pj_per_byte']:.4g} pJ/B  write {pt['write_pj_per_byte']:.4g} pJ/B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
