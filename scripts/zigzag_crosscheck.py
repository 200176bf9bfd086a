"""Cross-check the systolic model's energy against ZigZag with identical per-access costs.

    python scripts/zigzag_crosscheck.py generate --zigzag-python /tmp/zzvenv/bin/python
    python scripts/zigzag_crosscheck.py compare

``generate`` (needs ``zigzag-dse`` in a separate interpreter, never a project dependency) builds,
for one 3x3 conv layer per dataflow (OS, WS, IS) on a 32x32 array and three SRAM cases, a ZigZag
hardware description whose per-access energies are the hwsim config's (MAC, register file, each
operand's SRAM read and write per byte, DRAM read and write per bit), a spatial mapping equal to
hwsim's (rows x columns of the array) and two temporal mappings: hwsim's fixed loop order and
ZigZag's own energy-optimal one (LOMA). It writes ``tests/data/zigzag_reference.json``: the
ZigZag version, every input, and per component the energy and bytes moved.

``compare`` (no ZigZag needed) runs hwsim on the same layers, in both accumulation modes, and
prints hwsim vs ZigZag per component with the ratio; ``rows()`` is what the test checks.
The components pair what both models count: ``mac``, ``rf`` (every per-PE register access),
``sram_<operand>`` (array-side SRAM accesses), ``sram_fill`` / ``sram_drain`` (SRAM side of DRAM
transfers), ``dram_<operand>``. Differences are explained in docs/hwsim.md, "Cross-check against
ZigZag".
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "data" / "zigzag_reference.json"
CONFIG = Path(__file__).resolve().parents[1] / "accel_configs" / "systolic_32x32_os.yaml"
# the layer: 16x16 output, 128 -> 256 channels, 3x3, stride 1; the input is given padded
# (18x18, padding 0: SCALE-Sim's convention, which hwsim shares), so both models fetch the same
# 18x18x128 input words (ZigZag would otherwise not count the zero border)
LAYER = {"in_h": 18, "in_w": 18, "in_channels": 128, "out_channels": 256, "kernel": 3, "stride": 1, "padding": 0}
# (SRAM kB per operand, share of it ZigZag may fill): everything fits once; tiling and refetches;
# and ZigZag given only hwsim's working set (half of each read SRAM, the other half prefetches)
SRAM_CASES = ((1024, 1.0), (64, 1.0), (64, 0.5))
DATAFLOWS = ("os", "ws", "is")
ARRAY = 32                       # rows = cols of the config's array (checked in hardware())
SRAM_BUS_BITS = 256              # ZigZag counts accesses in bus words; cost = bus bytes x pJ/byte
DRAM_BUS_BITS = 64
COMPONENTS = ("mac", "rf", "sram_ifmap", "sram_filter", "sram_ofmap", "sram_fill", "sram_drain",
              "dram_ifmap", "dram_filter", "dram_ofmap")
TOLERANCE = 0.10                 # on every component both models count alike (unmatched() says which not)


# ----------------------------------------------------------------------------------------------
# The ZigZag inputs, from the hwsim config (project interpreter)
# ----------------------------------------------------------------------------------------------
def hwsim_config(dataflow: str, sram_kb: float, accumulation: str = "faithful"):
    from hwsim import api
    cfg = api.load_config(str(CONFIG))
    return cfg.with_overrides(dataflow=dataflow, accumulation=accumulation,
                              sram_kb={"ifmap": sram_kb, "filter": sram_kb, "ofmap": sram_kb})


def _memory(size_bits: int, operand: str, bus_bits: int, r_cost: float, w_cost: float, served: list[str]) -> dict:
    ports = [{"name": "r_port_1", "type": "read", "bandwidth_min": 8, "bandwidth_max": bus_bits,
              "allocation": [f"{operand}, tl"] + ([f"{operand}, th"] if operand == "O" else [])},
             {"name": "w_port_1", "type": "write", "bandwidth_min": 8, "bandwidth_max": bus_bits,
              "allocation": [f"{operand}, fh"] + ([f"{operand}, fl"] if operand == "O" else [])}]
    return {"size": size_bits, "r_cost": r_cost, "w_cost": w_cost, "area": 0, "latency": 1,
            "operands": [operand], "ports": ports, "served_dimensions": served}


def hardware(dataflow: str, sram_kb: float, share: float = 1.0) -> dict:
    """ZigZag accelerator: per-PE 8-bit registers, one SRAM per operand (``share`` of its
    capacity usable), DRAM; every per-access energy is hwsim's for ``sram_kb``."""
    cfg = hwsim_config(dataflow, sram_kb)
    e, wb = cfg.energy, cfg.word_bytes
    assert wb.ifmap == wb.filter == wb.ofmap == 1, "the mapping below assumes 1-byte words"
    assert cfg.array.rows == cfg.array.cols == ARRAY, "the mapping below assumes the 32x32 array"
    mems: dict = {}
    for op, name in (("I2", "filter"), ("I1", "ifmap"), ("O", "ofmap")):
        mems[f"reg_{name}"] = _memory(8, op, 8, e.rf_access_pj, e.rf_access_pj, [])
    bus = SRAM_BUS_BITS // 8
    for op, name in (("I2", "filter"), ("I1", "ifmap"), ("O", "ofmap")):
        kb = getattr(cfg.sram_kb, name)
        mems[f"sram_{name}"] = _memory(int(kb * share * 1024 * 8), op, SRAM_BUS_BITS,
                                       bus * e.sram_pj_per_byte(kb, "read"), bus * e.sram_pj_per_byte(kb, "write"),
                                       ["D1", "D2"])
    dram = {"size": 10**10, "r_cost": DRAM_BUS_BITS * e.dram_read_pj(), "w_cost": DRAM_BUS_BITS * e.dram_write_pj(),
            "area": 0, "latency": 1, "operands": ["I1", "I2", "O"],
            "ports": [{"name": "rw_port_1", "type": "read_write", "bandwidth_min": 8, "bandwidth_max": DRAM_BUS_BITS,
                       "allocation": ["I1, fh", "I1, tl", "I2, fh", "I2, tl", "O, fh", "O, tl", "O, fl", "O, th"]}],
            "served_dimensions": ["D1", "D2"]}
    mems["dram"] = dram
    return {"name": f"hwsim_{dataflow}_{int(sram_kb)}kb", "memories": mems,
            "operational_array": {"unit_energy": e.mac_pj, "unit_area": 1, "dimensions": ["D1", "D2"],
                                  "sizes": [cfg.array.rows, cfg.array.cols]}}


def workload() -> list[dict]:
    L = LAYER
    out = (L["in_h"] + 2 * L["padding"] - L["kernel"]) // L["stride"] + 1
    s = L["stride"]
    return [{"id": 0, "name": "conv", "operator_type": "Conv",
             "equation": "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]",
             "dimension_relations": [f"ix={s}*ox+1*fx", f"iy={s}*oy+1*fy"],
             "loop_dims": ["B", "K", "C", "OY", "OX", "FY", "FX"],
             "loop_sizes": [1, L["out_channels"], L["in_channels"], out, out, L["kernel"], L["kernel"]],
             # hwsim stores partial sums in 1-byte words (word_bytes.ofmap), so ZigZag does too
             "operand_precision": {"W": 8, "I": 8, "O": 8, "O_final": 8},
             "operand_source": {"I": 0, "W": 0}}]


def mapping(dataflow: str, loop_order: str) -> list[dict]:
    """hwsim's spatial mapping (rows x cols; OS: pixels x filters, WS: reduction x filters,
    IS: reduction x pixels) and, for ``loop_order == "hwsim"``, its temporal loop order:
    column folds outermost, row folds inside, the streamed dimension innermost; the reduction
    index runs channel-fastest (window row, window column, channel)."""
    L = LAYER
    out = (L["in_h"] + 2 * L["padding"] - L["kernel"]) // L["stride"] + 1
    k, c, m = L["kernel"], L["in_channels"], L["out_channels"]
    rows = cols = ARRAY
    if dataflow == "os":
        # a 32-pixel tile = 2 output rows of 16
        spatial = {"D1": [f"OX, {out}", f"OY, {rows // out}"], "D2": [f"K, {cols}"]}
        order = [["C", c], ["FX", k], ["FY", k], ["OY", out * out // rows], ["K", m // cols]]
    elif dataflow == "ws":
        spatial = {"D1": [f"C, {rows}"], "D2": [f"K, {cols}"]}
        order = [["OX", out], ["OY", out], ["C", c // rows], ["FX", k], ["FY", k], ["K", m // cols]]
    else:
        spatial = {"D1": [f"C, {rows}"], "D2": [f"OX, {out}", f"OY, {cols // out}"]}
        order = [["K", m], ["C", c // rows], ["FX", k], ["FY", k], ["OY", out * out // cols]]
    entry = {"name": "default", "spatial_mapping": spatial,
             "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"}}
    if loop_order == "hwsim":
        entry["temporal_ordering"] = order
    return [entry]


# ----------------------------------------------------------------------------------------------
# Running ZigZag (the zigzag interpreter: imports only zigzag, yaml, json)
# ----------------------------------------------------------------------------------------------
SRAM_OF = {"W": "filter", "I": "ifmap", "O": "ofmap"}


def _zigzag_components(cme) -> dict:
    """Energy (pJ) and bytes of one ZigZag evaluation, in hwsim's components."""
    energy = {k: 0.0 for k in COMPONENTS}
    moved = {k: 0.0 for k in COMPONENTS}
    energy["mac"] = float(cme.mac_energy)
    moved["mac"] = float(cme.layer.total_mac_count)
    rf_words: dict[str, float] = {}
    for layer_op, levels in cme.mem_energy_breakdown_further.items():
        op = str(layer_op)
        accesses = cme.memory_word_access[layer_op]
        mem_op = cme.memory_operand_links.layer_to_mem_op(layer_op)
        mem_levels = cme.accelerator.memory_hierarchy.get_memory_levels(mem_op=mem_op)
        for lvl, (en, acc, mem) in enumerate(zip(levels, accesses, mem_levels)):
            name = mem.name
            bus_bytes = {d: mem.get_max_bandwidth(mem_op, d) / 8 if mem.get_max_bandwidth(mem_op, d) else 0
                         for d in ("rd_out_to_low", "wr_in_by_low", "rd_out_to_high", "wr_in_by_high")}
            e = {str(d): float(v) for d, v in en.data.items()}
            a = {str(d): float(v) * bus_bytes[str(d)] for d, v in acc.data.items()}
            if name.startswith("reg_"):
                targets = {d: "rf" for d in e}
                rf_words[op] = rf_words.get(op, 0.0) + sum(float(v) for v in acc.data.values())
            elif name.startswith("sram_"):
                arr = f"sram_{SRAM_OF[op]}"
                targets = {"rd_out_to_low": arr, "wr_in_by_low": arr,
                           "wr_in_by_high": "sram_fill", "rd_out_to_high": "sram_drain"}
            else:
                targets = {d: f"dram_{SRAM_OF[op]}" for d in e}
            for d, comp in targets.items():
                energy[comp] += e.get(d, 0.0)
                moved[comp] += a.get(d, 0.0)
    return {"energy_pj": energy, "bytes": moved, "rf_accesses": rf_words, "total_pj": float(cme.energy_total),
            "temporal_mapping": str(cme.temporal_mapping), "latency_cycles": float(cme.latency_total2)}


def run_zigzag(case_dir: str) -> None:
    """Runs every case in ``case_dir`` (hardware/workload/mapping YAMLs) and writes results.json."""
    import logging
    import importlib.metadata

    from zigzag.api import get_hardware_performance_zigzag
    logging.disable(logging.INFO)
    root = Path(case_dir)
    cases = json.loads((root / "cases.json").read_text())
    results = {}
    for key, files in cases.items():
        _, _, cmes = get_hardware_performance_zigzag(
            files["workload"], files["hardware"], files["mapping"], opt="energy",
            dump_folder=str(root / key), loma_show_progress_bar=False, lpf_limit=6)
        results[key] = _zigzag_components(cmes[0][1][0][0])  # the one layer's evaluation
    results["_version"] = importlib.metadata.version("zigzag-dse")
    (root / "results.json").write_text(json.dumps(results))


def case_key(dataflow: str, sram_kb: float, loop_order: str, share: float = 1.0) -> str:
    return f"{dataflow}_{int(sram_kb)}kb_{loop_order}" + ("" if share == 1.0 else f"_share{share:g}")


def generate(zigzag_python: str, out: Path) -> None:
    import yaml

    from hwsim.trace.errors import HwsimError
    from hwsim.trace.fileio import atomic_write_json
    inputs, cases = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for kb, share in SRAM_CASES:
            for df in DATAFLOWS:
                for order in ("hwsim", "zigzag_optimal"):
                    key = case_key(df, kb, order, share)
                    inputs[key] = {"hardware": hardware(df, kb, share), "workload": workload(),
                                   "mapping": mapping(df, order)}
                    files = {}
                    for part, data in inputs[key].items():
                        p = root / f"{key}_{part}.yaml"
                        p.write_text(yaml.safe_dump(data, sort_keys=False))
                        files[part] = str(p)
                    cases[key] = files
        (root / "cases.json").write_text(json.dumps(cases))
        done = subprocess.run([zigzag_python, str(Path(__file__).resolve()), "_run-zigzag", tmp])
        if done.returncode != 0:
            raise HwsimError(zigzag_python, "--zigzag-python", f"ZigZag run failed (exit {done.returncode}, see above)")
        results = json.loads((root / "results.json").read_text())
    version = results.pop("_version")
    doc = {"source": "python scripts/zigzag_crosscheck.py generate (ZigZag, github.com/KULeuven-MICAS/zigzag)",
           "zigzag_version": version, "layer": LAYER, "config": str(CONFIG.relative_to(CONFIG.parents[1])),
           "cases": {k: {"inputs": inputs[k], "zigzag": results[k]} for k in cases}}
    atomic_write_json(out, doc, indent=1)
    print(f"wrote {out} (zigzag-dse {version}, {len(cases)} cases)")


# ----------------------------------------------------------------------------------------------
# Comparison (project interpreter, no ZigZag)
# ----------------------------------------------------------------------------------------------
def hwsim_components(dataflow: str, sram_kb: float, accumulation: str) -> dict:
    from hwsim import api
    cfg = hwsim_config(dataflow, sram_kb, accumulation)
    L = LAYER
    spec = api.conv_layer(L["in_h"], L["in_w"], L["in_channels"], L["out_channels"], kernel=L["kernel"],
                          stride=L["stride"], padding=L["padding"])
    r = api.simulate_layer(spec, cfg)
    return {"energy_pj": {k: float(r.energy_pj[k]) for k in COMPONENTS}, "total_pj": float(r.energy_pj["total"])}


def unmatched(r: dict) -> str | None:
    """Why a row of ``rows()`` compares two different counts (docs/hwsim.md, "Cross-check against
    ZigZag"), or None where both models count the same thing."""
    comp, case = r["component"], (r["sram_kb"], r["share"])
    if comp in ("rf", "total"):
        return "register convention: hwsim rf_accesses_per_mac = 3, ZigZag counts 6 per MAC"
    if case == (64, 1.0) and comp in ("sram_fill", "dram_ifmap", "dram_filter", "total_no_rf"):
        return "capacity: hwsim's DRAM read model uses half of each read SRAM (the other half prefetches)"
    if r["share"] != 1.0 and r["dataflow"] in ("os", "is") and comp in ("sram_fill", "dram_ifmap", "total_no_rf"):
        return "input halo: ZigZag refetches each tile's overlapping input rows, hwsim's working set keeps them"
    return None


def matched(r: dict) -> bool:
    return unmatched(r) is None


def load_reference(path: Path = REFERENCE) -> dict:
    from hwsim.trace.errors import HwsimError
    try:
        ref = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise HwsimError(str(path), "json", f"not JSON ({exc.msg})") from None
    missing = [case_key(df, kb, order, share) for kb, share in SRAM_CASES for df in DATAFLOWS
               for order in ("hwsim", "zigzag_optimal")
               if case_key(df, kb, order, share) not in ref.get("cases", {})]
    if missing:
        raise HwsimError(str(path), "cases", f"no case {missing[0]}: regenerate it with `generate`")
    return ref


def rows(ref: dict, accumulation: str = "faithful", loop_order: str = "hwsim") -> list[dict]:
    """One row per (case, component): hwsim and ZigZag energy (pJ) and their ratio."""
    out = []
    for kb, share in SRAM_CASES:
        for df in DATAFLOWS:
            z = ref["cases"][case_key(df, kb, loop_order, share)]["zigzag"]
            h = hwsim_components(df, kb, accumulation)
            hz = {**h["energy_pj"], "total": h["total_pj"], "total_no_rf": h["total_pj"] - h["energy_pj"]["rf"]}
            zz = {**z["energy_pj"], "total": z["total_pj"], "total_no_rf": z["total_pj"] - z["energy_pj"]["rf"]}
            for comp in (*COMPONENTS, "total", "total_no_rf"):
                hv, zv = hz[comp], zz[comp]
                ratio = hv / zv if zv else (1.0 if hv == 0 else float("inf"))
                out.append({"dataflow": df, "sram_kb": kb, "share": share, "component": comp,
                            "hwsim_pj": hv, "zigzag_pj": zv, "ratio": ratio})
    return out


def table(ref: dict, accumulation: str, loop_order: str, values: bool) -> list[str]:
    """Markdown table, one row per case: per component hwsim / ZigZag (``values``: both in nJ
    and the ratio; else the ratio only)."""
    comps = (*COMPONENTS, "total", "total_no_rf")
    what = "hwsim nJ / ZigZag nJ (ratio)" if values else "ratio hwsim / ZigZag"
    lines = [f"accumulation={accumulation}, ZigZag loop order={loop_order}, zigzag-dse {ref['zigzag_version']}: {what}",
             "", "| dataflow | SRAM kB | ZigZag SRAM share | " + " | ".join(comps) + " |",
             "|---|---|---|" + "---|" * len(comps)]
    by_case: dict = {}
    for r in rows(ref, accumulation, loop_order):
        by_case.setdefault((r["dataflow"], r["sram_kb"], r["share"]), []).append(r)
    for (df, kb, share), rs in by_case.items():
        cells = [f"{r['hwsim_pj'] / 1e3:,.0f} / {r['zigzag_pj'] / 1e3:,.0f} ({r['ratio']:.2f})" if values
                 else f"{r['ratio']:.3f}" for r in rs]
        lines.append(f"| {df} | {kb} | {share:g} | " + " | ".join(cells) + " |")
    return lines


def rf_table(ref: dict) -> list[str]:
    """ZigZag's register accesses per MAC by operand (hwsim counts ``rf_accesses_per_mac``)."""
    macs = ref["cases"][case_key("os", SRAM_CASES[0][0], "hwsim")]["zigzag"]["bytes"]["mac"]
    lines = ["ZigZag register accesses (reads + writes) per MAC, hwsim loop order", "",
             "| dataflow | input | weight | output | all |", "|---|---|---|---|---|"]
    for df in DATAFLOWS:
        acc = ref["cases"][case_key(df, SRAM_CASES[0][0], "hwsim")]["zigzag"]["rf_accesses"]
        per = [acc[op] / macs for op in ("I", "W", "O")]
        lines.append(f"| {df} | " + " | ".join(f"{v:.3f}" for v in per) + f" | {sum(per):.3f} |")
    return lines


def compare(ref_path: Path) -> None:
    ref = load_reference(ref_path)
    print("\n".join(rf_table(ref)))
    print()
    for acc, order, values in (("faithful", "hwsim", True), ("faithful", "hwsim", False),
                               ("scalesim", "hwsim", False), ("faithful", "zigzag_optimal", False)):
        print("\n".join(table(ref, acc, order, values)))
        print()


def _main(argv: list[str] | None) -> int:
    from hwsim.trace.errors import CliParser
    p = CliParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="run ZigZag and write the reference JSON")
    g.add_argument("--zigzag-python", required=True, help="interpreter with zigzag-dse installed")
    g.add_argument("--out", type=Path, default=REFERENCE)
    c = sub.add_parser("compare", help="hwsim vs the reference JSON, per component")
    c.add_argument("--reference", type=Path, default=REFERENCE)
    a = p.parse_args(argv)
    if a.cmd == "generate":
        generate(a.zigzag_python, a.out)
    else:
        compare(a.reference)
    return 0


def main(argv: list[str] | None = None) -> int:
    """The CLI (project interpreter): one-line errors, exit code 2."""
    from hwsim.trace.errors import cli_entry
    return cli_entry(_main)(argv)


if __name__ == "__main__":
    if sys.argv[1:2] == ["_run-zigzag"]:   # the worker, in the ZigZag interpreter (no hwsim there)
        run_zigzag(sys.argv[2])
        sys.exit(0)
    sys.exit(main())
