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

from hwsim.interop.scalesim_cfg import to_scalesim_cfg
from hwsim.models.systolic.config import SystolicConfig
from hwsim.trace.errors import HwsimError
from hwsim.trace.fileio import atomic_write_text
from hwsim.workload import lower
from hwsim.trace import LayerSpec



RUN_NAME = "hwsim_ref"


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
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    cfg_path = work / "hwsim_ref.cfg"
    topo_path = work / "topology.csv"
    atomic_write_text(cfg_path, to_scalesim_cfg(cfg.with_overrides(name=RUN_NAME), cfg.name))
    atomic_write_text(topo_path, "Layer name,IFMAP Height,IFMAP Width,Filter Height,Filter Width,Channels,"
                         "Num Filter,Strides,\n" + "".join(topology_row(s) for s in specs))
    return run_scalesim_files(cfg_path, topo_path, work, [s.name for s in specs])


def run_scalesim_files(cfg_path: Path, topo_path: Path, workdir: str | os.PathLike, names: list[str],
                       gemm: bool = False) -> list[RefLayer]:
    """SCALE-Sim on a ``.cfg`` and a topology CSV as a user would run it (``gemm``: an M, N, K
    topology); ``names``: the layer names to label its report rows with, in order."""
    try:
        from scalesim.scale_sim import scalesim
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise HwsimError("scalesim", "import", f"SCALE-Sim is not installed ({exc}); pip install -e '.[dev]'") from None
    work = Path(workdir)
    layout_path = work / "layout.csv"
    atomic_write_text(layout_path, "Layer name,\n")
    out_dir = work / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):
        sim = scalesim(save_disk_space=True, verbose=False, config=str(cfg_path),
                       topology=str(topo_path), layout=str(layout_path), input_type_gemm=gemm)
        sim.run_scale(top_path=str(out_dir))
    run_dir = next(p for p in out_dir.iterdir() if p.is_dir())
    compute = _read_report(run_dir / "COMPUTE_REPORT.csv")
    detail = _read_report(run_dir / "DETAILED_ACCESS_REPORT.csv")
    out = []
    for name, c_row, d_row in zip(names, compute, detail):
        out.append(RefLayer(
            name=name,
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
