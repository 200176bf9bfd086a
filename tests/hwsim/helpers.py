"""Tiny data for hwsim tests: a small accelerator config and hand-made traces."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from hwsim.config import parse_config
from hwsim.trace import GateGrid, TraceWriter, make_layer

ROOT = Path(__file__).resolve().parents[2]   # the repository

BASE = dict(
    name="tiny", model="systolic", array=dict(rows=8, cols=8), dataflow="os", clock_mhz=1000,
    sram_kb=dict(ifmap=2, filter=2, ofmap=2), word_bytes=dict(ifmap=1, filter=1, ofmap=1),
    dram=dict(bandwidth_gb_s=16), sparse=dict(mode="skip", compact_overhead_cycles=2, index_bits=8),
    energy=dict(source="Horowitz ISSCC 2014 (45 nm)", process_nm=45, mac_pj=0.3, rf_access_pj=0.3,
                rf_accesses_per_mac=3,
                sram=[dict(kb=8, read_pj_per_byte=1.25, write_pj_per_byte=1.25),
                      dict(kb=32, read_pj_per_byte=2.5, write_pj_per_byte=2.5)],
                dram_pj_per_bit=20.3, static_mw=5.0),
)


def config_dict(**changes):
    import copy
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        data[key] = value
    return data


def tiny_config(**changes):
    return parse_config(config_dict(**changes), "tiny")


def tiny_network(gate=GateGrid(G=2, S=2, b=2)):
    """stem conv -> gated conv -> gated strided conv + 1x1 shortcut -> fc."""
    stem = make_layer("stem", "conv", (3, 8, 8), 8, 3, 1, 1)
    g1 = make_layer("g1", "conv", (8, 8, 8), 8, 3, 1, 1, gate=gate, inputs=["stem"])
    g2 = make_layer("g2", "conv", (8, 8, 8), 16, 3, 2, 1, gate=gate, inputs=["g1", "stem"])
    sc = make_layer("sc", "conv", (8, 8, 8), 16, 1, 2, 0, inputs=["g1", "stem"])
    fc = make_layer("fc", "linear", (16, 1, 1), 10, inputs=["g2", "sc"])
    return [stem, g1, g2, sc, fc]


def random_blocks(spec, n, density, rng):
    return rng.random(spec.gate_grid(n)) < density


def write_trace(path: Path, n_images: int = 4, density: float = 0.5, seed: int = 0,
                with_acts: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    with TraceWriter(path, meta={"model": "tiny", "note": "hand-made test trace"}) as tw:
        for spec in tiny_network():
            gm = random_blocks(spec, n_images, density, rng) if spec.gate is not None else None
            am = (rng.random((2, *spec.in_shape)) < 0.6) if with_acts and spec.op == "conv" else None
            tw.add_layer(spec, gate_masks=gm, act_masks=am)
    return path


def ungate(spec):
    return replace(spec, gate=None)
