"""Run SCALE-Sim v3 (PyPI ``scalesim``, a dev dependency) on the same layers, for validation.

Used by the tests and by ``bench/``. Nothing in the simulator itself depends on it.
SCALE-Sim conventions handled here:

- it takes the *padded* input size and computes H_out = ceil((H - kh + s) / s); we give it the
  used padded extent (H_out - 1) * s + kh so both sides agree on the output size;
- its cycles are counted from 0 (it reports the index of the last cycle): ours = its + 1;
- it needs explicit ``[layout]`` and ``[sparsity]`` sections and writes its reports
  (COMPUTE_REPORT.csv, DETAILED_ACCESS_REPORT.csv) into a directory;
- its word size is 1 byte, its SRAMs are double-buffered with half active, and in
  ``InterfaceBandwidth: CALC`` mode reads never stall.
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from hwsim.models.systolic.config import SystolicConfig
from hwsim.trace.errors import HwsimError
from hwsim.trace.fileio import atomic_write_text
from hwsim.workload import lower
from hwsim.trace import LayerSpec

CFG_TEMPLATE = """[general]
run_name = hwsim_ref

[architecture_presets]
ArrayHeight : {rows}
ArrayWidth : {cols}
IfmapSramSzkB : {ifmap_kb}
FilterSramSzkB : {filter_kb}
OfmapSramSzkB : {ofmap_kb}
IfmapOffset : 0
FilterOffset : 10000000
OfmapOffset : 20000000
Bandwidth : 10
Dataflow : {dataflow}
ReadRequestBuffer : 32
WriteRequestBuffer : 32

[layout]
IfmapCustomLayout : False
IfmapSRAMBankBandwidth : 10
IfmapSRAMBankNum : 10
IfmapSRAMBankPort : 2
FilterCustomLayout : False
FilterSRAMBankBandwidth : 10
FilterSRAMBankNum : 10
FilterSRAMBankPort : 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth : CALC
UseRamulatorTrace : False
"""


@dataclass
class RefLayer:
    name: str
    cycles: int          # SCALE-Sim "Total Cycles" + 1 (count, not last index)
    stall_cycles: int
    ifmap_sram_reads: int
    filter_sram_reads: int
    ofmap_sram_writes: int
    ifmap_dram_reads: int
    filter_dram_reads: int
    ofmap_dram_writes: int


def topology_row(spec: LayerSpec) -> str:
    """SCALE-Sim topology row for an ungrouped layer (padded, used input extent)."""
    if spec.groups != 1:
        raise HwsimError("scalesim_ref", f"layer {spec.name!r}.groups", "SCALE-Sim runs groups=1 layers only")
    g = lower(spec).gemm
    if g.sh != g.sw:  # SCALE-Sim has one stride for both axes (kernels may be rectangular)
        raise HwsimError("scalesim_ref", f"layer {spec.name!r}.stride", "SCALE-Sim needs equal strides")
    return f"{spec.name},{g.in_h_used},{g.in_w_used},{g.kh},{g.kw},{g.c_group},{g.M},{g.sh},\n"


def run_scalesim(specs: list[LayerSpec], cfg: SystolicConfig, workdir: str | os.PathLike) -> list[RefLayer]:
    """Simulate ``specs`` (dense, one image) with SCALE-Sim on ``cfg``; return per-layer figures."""
    try:
        from scalesim.scale_sim import scalesim
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise HwsimError("scalesim", "import", f"SCALE-Sim is not installed ({exc}); pip install -e '.[dev]'") from None
    if any(w != 1 for w in (cfg.word_bytes.ifmap, cfg.word_bytes.filter, cfg.word_bytes.ofmap)):
        raise HwsimError(cfg.name, "word_bytes", "SCALE-Sim models 1-byte words only")
    for op in ("ifmap", "filter", "ofmap"):
        kb = getattr(cfg.sram_kb, op)
        if kb != int(kb):
            raise HwsimError(cfg.name, f"sram_kb.{op}", "SCALE-Sim needs whole kB")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    cfg_path = work / "hwsim_ref.cfg"
    topo_path = work / "topology.csv"
    layout_path = work / "layout.csv"
    atomic_write_text(cfg_path, CFG_TEMPLATE.format(
        rows=cfg.array.rows, cols=cfg.array.cols, ifmap_kb=int(cfg.sram_kb.ifmap),
        filter_kb=int(cfg.sram_kb.filter), ofmap_kb=int(cfg.sram_kb.ofmap), dataflow=cfg.dataflow))
    atomic_write_text(topo_path, "Layer name,IFMAP Height,IFMAP Width,Filter Height,Filter Width,Channels,"
                         "Num Filter,Strides,\n" + "".join(topology_row(s) for s in specs))
    atomic_write_text(layout_path, "Layer name,\n")
    out_dir = work / "out"
    out_dir.mkdir(exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):
        sim = scalesim(save_disk_space=True, verbose=False, config=str(cfg_path),
                       topology=str(topo_path), layout=str(layout_path))
        sim.run_scale(top_path=str(out_dir))
    run_dir = out_dir / "hwsim_ref"
    compute = _read_report(run_dir / "COMPUTE_REPORT.csv")
    detail = _read_report(run_dir / "DETAILED_ACCESS_REPORT.csv")
    out = []
    for spec, c_row, d_row in zip(specs, compute, detail):
        out.append(RefLayer(
            name=spec.name,
            cycles=int(float(c_row[2])) + 1,
            stall_cycles=int(float(c_row[3])),
            ifmap_sram_reads=int(float(d_row[3])),
            filter_sram_reads=int(float(d_row[6])),
            ofmap_sram_writes=int(float(d_row[9])),
            ifmap_dram_reads=int(float(d_row[12])),
            filter_dram_reads=int(float(d_row[15])),
            ofmap_dram_writes=int(float(d_row[18])),
        ))
    return out


def _read_report(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        rows = [[c.strip() for c in row] for row in csv.reader(handle)]
    return [r for r in rows[1:] if r and r[0] != ""]
