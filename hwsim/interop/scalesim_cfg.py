"""SCALE-Sim ``.cfg`` <-> hwsim systolic config, so a SCALE-Sim study runs unchanged in hwsim.

A ``.cfg`` read here becomes a systolic config with SCALE-Sim's counting
(``accumulation: scalesim``), 1-byte words and its array, SRAM sizes and dataflow, so the compute
cycles and SRAM/DRAM counts are SCALE-Sim's (docs/hwsim.md, "SCALE-Sim formats"). What a ``.cfg``
does not hold is filled in and labelled: a 1 GHz clock (SCALE-Sim counts cycles only); DRAM
bandwidth = ``Bandwidth`` words per cycle at that clock; energy from the 45 nm table the
shipped configs use (``horowitz_cacti7_45nm``). ``InterfaceBandwidth: USER`` becomes ``bandwidth_mode: user`` with
``interface_words_per_cycle`` = ``Bandwidth`` (SCALE-Sim feeds the OFMAP buffer at ``Bandwidth``
and the ifmap / filter buffers at ``IfmapSRAMBankBandwidth`` / ``FilterSRAMBankBandwidth``; hwsim
has one interface width, so the three must agree), and the DRAM bandwidth of the roofline is
then the three interfaces together, 3 x ``Bandwidth``. SCALE-Sim's sparsity and Ramulator
options are refused.
"""
from __future__ import annotations

import configparser
import os
from pathlib import Path

from hwsim.models.base import validate_config
from hwsim.models.systolic.config import SystolicConfig
from hwsim.trace.errors import HwsimError

CLOCK_MHZ = 1000.0
ENERGY = {"table": "horowitz_cacti7_45nm"}  # SCALE-Sim has no energy model: the shipped configs' cited table
REQUIRED = ("ArrayHeight", "ArrayWidth", "IfmapSramSzkB", "FilterSramSzkB", "OfmapSramSzkB", "Dataflow")


def _read(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.optionxform = str.lower  # SCALE-Sim's keys are case-insensitive
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise HwsimError(str(path), "(file)", "not a text file") from None
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise HwsimError(str(path), "(syntax)", str(exc).splitlines()[0]) from None
    return parser


def _get(parser: configparser.ConfigParser, key: str) -> str | None:
    for section in parser.sections():
        if parser.has_option(section, key.lower()):
            return parser.get(section, key.lower()).strip()
    return None


def _number(parser, key: str, source: str, kind=int, default=None):
    raw = _get(parser, key)
    if raw is None:
        if default is None:
            raise HwsimError(source, key, "missing")
        return default
    try:
        return kind(raw.split(",")[0])
    except ValueError:
        raise HwsimError(source, key, f"not a number: {raw!r}") from None


def load_scalesim_cfg(path: str | os.PathLike) -> SystolicConfig:
    """A SCALE-Sim ``.cfg`` as a systolic config that counts as SCALE-Sim does."""
    path = Path(path)
    source = str(path)
    parser = _read(path)
    for key in REQUIRED:
        if _get(parser, key) is None:
            raise HwsimError(source, key, "missing (a SCALE-Sim [architecture_presets] field)")
    mode = (_get(parser, "InterfaceBandwidth") or "CALC").upper()
    if mode not in ("CALC", "USER"):
        raise HwsimError(source, "InterfaceBandwidth", f"{mode}: SCALE-Sim knows CALC and USER")
    if (_get(parser, "SparsitySupport") or "false").lower() == "true":
        raise HwsimError(source, "SparsitySupport", "SCALE-Sim's N:M weight sparsity is not modelled")
    if (_get(parser, "UseRamulatorTrace") or "false").lower() == "true":
        raise HwsimError(source, "UseRamulatorTrace", "Ramulator traces are not modelled")
    dataflow = _get(parser, "Dataflow").lower()
    bandwidth = _number(parser, "Bandwidth", source, float, 10.0)
    user = {}
    if mode == "USER":
        for key in ("IfmapSRAMBankBandwidth", "FilterSRAMBankBandwidth"):
            if _number(parser, key, source, float, 10.0) != bandwidth:  # SCALE-Sim's default is 10
                raise HwsimError(source, key, f"must equal Bandwidth ({bandwidth:g}) in USER mode: hwsim models one "
                                 "interface width for the three buffers")
        if bandwidth != int(bandwidth):
            raise HwsimError(source, "Bandwidth", f"{bandwidth:g}: USER mode needs whole words per cycle")
        user = {"bandwidth_mode": "user", "interface_words_per_cycle": int(bandwidth)}
    # USER: three interfaces of Bandwidth words each and no other DRAM limit in SCALE-Sim
    dram_words = 3 * bandwidth if mode == "USER" else bandwidth
    data = {
        "name": _get(parser, "run_name") or path.stem, "model": "systolic",
        "array": {"rows": _number(parser, "ArrayHeight", source), "cols": _number(parser, "ArrayWidth", source)},
        "dataflow": dataflow, "accumulation": "scalesim", "clock_mhz": CLOCK_MHZ,
        "sram_kb": {"ifmap": _number(parser, "IfmapSramSzkB", source), "filter": _number(parser, "FilterSramSzkB", source),
                    "ofmap": _number(parser, "OfmapSramSzkB", source)},
        "word_bytes": {"ifmap": 1, "filter": 1, "ofmap": 1},
        "dram": {"bandwidth_gb_s": dram_words * CLOCK_MHZ / 1000.0},
        "sparse": {"mode": "skip"},
        "energy": ENERGY, **user,
    }
    return validate_config(SystolicConfig, data, source)


def to_scalesim_cfg(cfg: SystolicConfig, source: str) -> str:
    """The ``.cfg`` text SCALE-Sim v3 runs for ``cfg``'s dense array (what it can express)."""
    if getattr(cfg, "model", None) != "systolic":
        raise HwsimError(source, "model", f"only systolic configs have a SCALE-Sim form (this one is {cfg.model!r})")
    for op in ("ifmap", "filter", "ofmap"):
        kb = getattr(cfg.sram_kb, op)
        if kb != int(kb):
            raise HwsimError(source, f"sram_kb.{op}", f"{kb}: SCALE-Sim needs whole kB")
        if getattr(cfg.word_bytes, op) != 1:
            raise HwsimError(source, f"word_bytes.{op}", "SCALE-Sim models 1-byte words only")
    words_per_cycle = cfg.dram.bandwidth_gb_s * 1000.0 / cfg.clock_mhz
    user = getattr(cfg, "bandwidth_mode", "calc") == "user"
    bank_bw, bank_num = (cfg.interface_words_per_cycle, 1) if user else (10, 10)
    bandwidth = cfg.interface_words_per_cycle if user else max(1, round(words_per_cycle))
    notes = [f"# written by hwsim from {cfg.name}: dense array only (sparse.mode {cfg.sparse.mode} has no SCALE-Sim form);",
             f"# SCALE-Sim counts partial sums its own way (hwsim accumulation: {cfg.accumulation});",
             "# Bandwidth = interface_words_per_cycle (USER mode; the SRAM bank bandwidths equal it)" if user else
             f"# Bandwidth = {cfg.dram.bandwidth_gb_s} GB/s at {cfg.clock_mhz} MHz in 1-byte words per cycle"]
    rows = [
        "[general]", f"run_name = {cfg.name}", "",
        "[architecture_presets]", f"ArrayHeight : {cfg.array.rows}", f"ArrayWidth : {cfg.array.cols}",
        f"IfmapSramSzkB : {int(cfg.sram_kb.ifmap)}", f"FilterSramSzkB : {int(cfg.sram_kb.filter)}",
        f"OfmapSramSzkB : {int(cfg.sram_kb.ofmap)}", "IfmapOffset : 0", "FilterOffset : 10000000",
        "OfmapOffset : 20000000", f"Bandwidth : {bandwidth}", f"Dataflow : {cfg.dataflow}",
        "ReadRequestBuffer : 32", "WriteRequestBuffer : 32", "",
        "[layout]", "IfmapCustomLayout : False", f"IfmapSRAMBankBandwidth : {bank_bw}", f"IfmapSRAMBankNum : {bank_num}",
        "IfmapSRAMBankPort : 2", "FilterCustomLayout : False", f"FilterSRAMBankBandwidth : {bank_bw}",
        f"FilterSRAMBankNum : {bank_num}", "FilterSRAMBankPort : 2", "",
        "[sparsity]", "SparsitySupport : false", "SparseRep : ellpack_block", "OptimizedMapping : false",
        "BlockSize : 8", "RandomNumberGeneratorSeed : 40", "",
        "[run_presets]", f"InterfaceBandwidth : {'USER' if user else 'CALC'}", "UseRamulatorTrace : False",
    ]
    return "\n".join(notes + rows) + "\n"
