"""``bandwidth_mode: user``: SCALE-Sim v3's USER-mode stalls, checked against SCALE-Sim's own
figures committed in tests/data/scalesim_user_bw.json (written by
``python bench/scalesim_user_bandwidth.py --json tests/data/scalesim_user_bw.json``), so this
test does not run SCALE-Sim."""
import json
from pathlib import Path

import numpy as np
import pytest

from hwsim.api import simulate_layer
from hwsim.config import parse_config
from hwsim.interop.scalesim_topology import load_topology
from hwsim.models.systolic.bandwidth import user_bandwidth
from hwsim.models.systolic.counts import dense_layer_counts, fold_shape, gated_layer_counts
from hwsim.trace import GateGrid
from hwsim.trace.errors import HwsimError
from hwsim.workload import conv_layer, linear_layer, lower
from tests.hwsim.helpers import config_dict, tiny_config

DATA = Path(__file__).resolve().parents[3] / "data" / "scalesim_user_bw.json"
REF = json.loads(DATA.read_text())
MINE = {"cycles": "cycles", "stall_cycles": "stall_cycles", "ifmap_dram_reads": "dram_ifmap_reads",
        "filter_dram_reads": "dram_filter_reads", "ofmap_dram_writes": "dram_ofmap_writes"}


def _layer(entry):
    build = conv_layer if entry["kind"] == "conv" else linear_layer
    return build(*entry["args"], name=entry["name"])


def _user(df, rows, cols, bw, kb):
    return tiny_config(dataflow=df, array={"rows": rows, "cols": cols}, accumulation="scalesim",
                       bandwidth_mode="user", interface_words_per_cycle=bw,
                       sram_kb={"ifmap": kb, "filter": kb, "ofmap": kb}, word_bytes={"ifmap": 1, "filter": 1, "ofmap": 1})


@pytest.mark.parametrize("df", ["os", "ws", "is"])
def test_user_mode_equals_scalesim_user_mode(df):
    layers = {e["name"]: _layer(e) for e in REF["layers"]}
    cases = [c for c in REF["cases"] if c["dataflow"] == df]
    assert len(cases) == 36 and REF["scalesim_version"] == "3.0.0"
    assert sum(c["stall_cycles"] > 0 for c in cases) >= 10   # the grid does exercise stalls
    for case in cases:
        cfg = _user(df, case["rows"], case["cols"], case["bandwidth"], REF["sram_kb"])
        c = dense_layer_counts(lower(layers[case["layer"]]), cfg)
        mine = {k: int(getattr(c, v)) for k, v in MINE.items()}
        assert mine == {k: case[k] for k in MINE}, case


def test_raw_topology_row_differs_only_by_scalesims_holes(tmp_path):
    """A CSV row whose (H - kh) is not a multiple of the stride: SCALE-Sim's last output row reads
    past its input and leaves those words out (holes); hwsim's layer reads them. With the same
    holes the stall model agrees exactly; without them it does not (docs/hwsim.md)."""
    raw = REF["raw_topology_row"]
    path = tmp_path / "topo.csv"
    path.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, "
                    "Strides,\n" + raw["row"] + "\n")
    g = lower(load_topology(path)[0]).gemm
    assert g.in_h_used == raw["given_input"][0] + 1
    differ = 0
    for case in raw["cases"]:
        cfg = _user(case["dataflow"], case["rows"], case["cols"], case["bandwidth"], REF["sram_kb"])
        theirs = (case["cycles"], case["stall_cycles"], case["ifmap_dram_reads"])
        holes = user_bandwidth(g, cfg, given=tuple(raw["given_input"]))
        assert (holes.cycles, holes.stall_cycles, holes.dram_ifmap_reads) == theirs, case
        plain = user_bandwidth(g, cfg)
        differ += (plain.cycles, plain.stall_cycles, plain.dram_ifmap_reads) != theirs
    assert differ == len(raw["cases"])


@pytest.mark.parametrize("df", ["os", "ws", "is"])
def test_no_read_misses_and_interface_as_wide_as_the_array_give_calc_cycles(df):
    """SRAMs that hold the whole operand never miss; a write interface of C words drains like CALC's."""
    spec = conv_layer(10, 10, 8, 12, 3, 1, 1)
    common = dict(dataflow=df, array={"rows": 4, "cols": 8}, accumulation="scalesim",
                  sram_kb={"ifmap": 64, "filter": 64, "ofmap": 1}, word_bytes={"ifmap": 1, "filter": 1, "ofmap": 1})
    calc = dense_layer_counts(lower(spec), tiny_config(**common))
    user = dense_layer_counts(lower(spec), tiny_config(**common, bandwidth_mode="user", interface_words_per_cycle=8))
    rf, cf, per_fold = fold_shape(lower(spec).gemm, df, 4, 8)
    assert user.cycles == calc.cycles
    assert user.stall_cycles == calc.cycles - rf * cf * per_fold


def test_calc_is_the_default_and_reports_as_before():
    cfg = tiny_config()
    assert cfg.bandwidth_mode == "calc" and cfg.interface_words_per_cycle is None
    assert "bandwidth" not in cfg.describe()
    res = simulate_layer(conv_layer(8, 8, 4, 8, 3, 1, 1), cfg)
    assert "stall_cycles" not in res.figures.counters


def test_user_mode_reports_stalls_and_prices_them():
    spec = conv_layer(10, 10, 8, 12, 3, 1, 1)
    cfg = _user("os", 8, 8, 1, 1)
    res = simulate_layer(spec, cfg)
    assert res.figures.counters["stall_cycles"] > 0
    assert res.cycles == dense_layer_counts(lower(spec), cfg).cycles
    assert res.total_cycles >= res.cycles
    assert "user bandwidth 1 words/cycle" in cfg.describe()


@pytest.mark.parametrize("df", ["os", "ws", "is"])
def test_gated_layers_keep_the_dense_stalls(df):
    spec = conv_layer(8, 8, 8, 8, 3, 1, 1, gate=GateGrid(G=2, S=2, b=2))
    cfg = _user(df, 4, 4, 2, 1).with_overrides(sparse={"mode": "gate"})
    dense = dense_layer_counts(lower(spec), cfg)
    masks = np.random.default_rng(0).random((3, 8, 8, 8)) < 0.5
    for c in gated_layer_counts(lower(spec), cfg, masks):
        assert (c.cycles, c.stall_cycles) == (dense.cycles, dense.stall_cycles)


@pytest.mark.parametrize("df", ["ws", "is"])
def test_faithful_ws_is_drain_only_final_outputs(df):
    """Faithful accumulation keeps partial sums in the OFMAP SRAM: fewer drains, never more stalls
    from the write side than SCALE-Sim's counting (same reads, fewer writes)."""
    spec = conv_layer(8, 8, 16, 8, 3, 1, 1)
    scalesim = _user(df, 4, 4, 4, 1)
    faithful = scalesim.with_overrides(accumulation="faithful")
    a = dense_layer_counts(lower(spec), scalesim)
    b = dense_layer_counts(lower(spec), faithful)
    rf, cf, per_fold = fold_shape(lower(spec).gemm, df, 4, 4)
    assert rf * cf * per_fold <= b.cycles <= a.cycles
    assert b.dram_ofmap_writes == 8 * 8 * 8   # final outputs only (nothing spills at this size)


@pytest.mark.parametrize("changes, field", [
    ({"bandwidth_mode": "user"}, "interface_words_per_cycle"),
    ({"interface_words_per_cycle": 4}, "interface_words_per_cycle"),
    ({"bandwidth_mode": "user", "interface_words_per_cycle": 0}, "interface_words_per_cycle"),
    ({"bandwidth_mode": "fast", "interface_words_per_cycle": 4}, "bandwidth_mode"),
])
def test_bad_bandwidth_fields_fail_in_one_line_naming_the_field(changes, field):
    with pytest.raises(HwsimError) as err:
        parse_config(config_dict(**changes), "cfg.yaml")
    assert err.value.field == field and "\n" not in err.value.one_line()
