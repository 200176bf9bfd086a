"""scripts/zigzag_crosscheck.py: hwsim stays within 10 % of the committed ZigZag reference on every
component both models count alike; the reference's inputs are still hwsim's per-access costs.

The reference (tests/data/zigzag_reference.json) was written by
`python scripts/zigzag_crosscheck.py generate --zigzag-python <interpreter with zigzag-dse>`;
these tests only read it, so they run without ZigZag installed.
"""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import zigzag_crosscheck as zz  # noqa: E402


@pytest.fixture(scope="module")
def ref():
    return zz.load_reference()


@pytest.fixture(scope="module")
def faithful_rows(ref):
    return zz.rows(ref, "faithful", "hwsim")


def test_reference_was_built_from_hwsims_current_costs_and_mappings(ref):
    """A changed energy table or mapping makes the reference stale: regenerate it."""
    for kb, share in zz.SRAM_CASES:
        for df in zz.DATAFLOWS:
            for order in ("hwsim", "zigzag_optimal"):
                stored = ref["cases"][zz.case_key(df, kb, order, share)]["inputs"]
                assert stored["hardware"] == zz.hardware(df, kb, share), (df, kb, share)
                assert stored["workload"] == zz.workload()
                assert stored["mapping"] == zz.mapping(df, order)
    assert ref["layer"] == zz.LAYER


def test_components_counted_alike_agree_within_10_percent(faithful_rows):
    checked = [r for r in faithful_rows if zz.matched(r)]
    assert len(checked) >= 60  # most of the 9 cases x 10 components
    bad = [(r["dataflow"], r["sram_kb"], r["share"], r["component"], round(r["ratio"], 3))
           for r in checked if abs(r["ratio"] - 1) > zz.TOLERANCE]
    assert not bad


def test_scalesim_counting_is_far_from_zigzag_where_partial_sums_drain(ref):
    """The comparison can fail: SCALE-Sim's counting drains every WS/IS row fold to DRAM."""
    rows = {(r["dataflow"], r["sram_kb"], r["share"], r["component"]): r["ratio"]
            for r in zz.rows(ref, "scalesim", "hwsim")}
    for df in ("ws", "is"):
        assert rows[(df, 1024, 1.0, "dram_ofmap")] > 10


def test_compare_prints_one_row_per_case(capsys):
    assert zz.main(["compare"]) == 0
    out = capsys.readouterr().out
    assert out.count("| dataflow | SRAM kB |") == 4
    assert sum(line.startswith("| ws | 64 | 0.5 |") for line in out.splitlines()) == 4
