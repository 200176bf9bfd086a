"""SRAM energy by capacity: the shared 45 nm table reproduces the committed CACTI 7 sweep
(tests/data/cacti7_45nm_sram.json, from scripts/cacti_sram_sweep.py), the two interpolation
modes do what docs/accel-config.md says, and the shipped configs price SRAM as docs state."""
import copy
import json
import math
import sys

import pytest

from hwsim.config import load_config, parse_config
from hwsim.models.base import ENERGY_TABLES, Energy
from hwsim.trace.errors import HwsimError
from hwsim.trace.fileio import load_yaml
from tests.hwsim.helpers import BASE, ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import cacti_sram_sweep  # noqa: E402

SWEEP = json.loads((ROOT / "tests" / "data" / "cacti7_45nm_sram.json").read_text())
TABLE = "horowitz_cacti7_45nm"


def _table() -> Energy:
    return Energy(table=TABLE)


def _is_pow2(kb: int) -> bool:
    return kb & (kb - 1) == 0


def test_sweep_records_its_cacti_build_and_configuration():
    assert SWEEP["tool"] == "CACTI" and SWEEP["version"].startswith("7.0")
    assert SWEEP["node_nm"] == 45 and SWEEP["block_bytes"] == 8 and len(SWEEP["binary_sha256"]) == 64
    assert '-cache type "ram"' in SWEEP["cfg_template"] and "{size}" in SWEEP["cfg_template"]
    assert "hwcomponents" in SWEEP["source"]


def test_table_entries_are_the_sweep_at_every_power_of_two():
    """The table holds the sweep's 1 kB .. 16 MB powers of two, to 4 significant digits."""
    e = _table()
    sweep = {p["kb"]: p for p in SWEEP["points"] if _is_pow2(p["kb"])}
    assert [p.kb for p in e.sram] == sorted(sweep) and len(sweep) == 15
    for p in e.sram:
        for kind in ("read", "write"):
            want = sweep[p.kb][f"{kind}_pj_per_byte"]
            assert e.sram_pj_per_byte(p.kb, kind) == pytest.approx(want, rel=6e-4)


def test_power_law_reproduces_the_held_out_sizes_within_15_percent():
    """Sizes between the table's points (1.5x each power of two) were run through CACTI too and
    are not in the table: the power-law interpolation is within 15 % at every one (read and
    write) and within 4 % on average (CACTI picks the array organisation per size, so its
    curve is not smooth). The figures docs/accel-config.md quotes are what
    ``python scripts/cacti_sram_sweep.py --check`` prints from the same function."""
    held = [p for p in SWEEP["points"] if not _is_pow2(p["kb"])]
    assert len(held) == 13
    acc = cacti_sram_sweep.table_accuracy(SWEEP, TABLE, "power_law")
    assert acc["held_out"]["n"] == 26 and acc["at_table_sizes"]["n"] == 30
    assert acc["held_out"]["max"] < 0.15 and acc["held_out"]["mean"] < 0.04
    assert acc["at_table_sizes"]["max"] < 6e-4


def _energy(**changes) -> Energy:
    data = copy.deepcopy(BASE["energy"])       # 8 kB: 1.25 pJ/B, 32 kB: 2.5 pJ/B
    data.update(changes)
    return Energy(**data)


def test_log_linear_is_the_default_and_power_law_is_geometric():
    lin, pw = _energy(), _energy(sram_scaling="power_law")
    assert lin.sram_scaling == "log_linear"
    assert lin.sram_pj_per_byte(16, "read") == pytest.approx((1.25 + 2.5) / 2)
    assert pw.sram_pj_per_byte(16, "read") == pytest.approx(math.sqrt(1.25 * 2.5))
    # above the largest entry: the last segment's slope continues (a power law in log-log)
    assert pw.sram_pj_per_byte(128, "write") == pytest.approx(2.5 * 2 ** 1)  # exponent 0.5, 4x the size
    assert lin.sram_pj_per_byte(128, "write") == pytest.approx(2.5 + 1.25)
    # below the smallest: clamped in both modes; at the entries: the entries
    for e in (lin, pw):
        assert e.sram_pj_per_byte(1, "read") == 1.25 and e.sram_pj_per_byte(32, "read") == pytest.approx(2.5)


def test_bad_sram_scaling_is_one_line_naming_the_field():
    data = copy.deepcopy(BASE)
    data["energy"] = {"table": TABLE, "sram_scaling": "cubic"}
    with pytest.raises(HwsimError) as exc:
        parse_config(data, "cfg.yaml")
    assert exc.value.field == "energy.sram_scaling" and "cubic" in exc.value.message
    assert "\n" not in exc.value.one_line()


def test_both_tables_load_and_the_old_one_keeps_log_linear():
    old = Energy(table="horowitz_45nm")
    assert old.sram_scaling == "log_linear" and [p.kb for p in old.sram] == [8, 32, 1024]
    assert load_yaml(ENERGY_TABLES / f"{TABLE}.yaml")["sram_scaling"] == "power_law"


# (config, operand) -> (read, write) pJ per byte, as docs/accel-config.md states them
SHIPPED = {
    ("systolic_32x32_os", "ifmap"): (3.234, 2.456),
    ("systolic_32x32_os_compact", "ofmap"): (3.234, 2.456),
    ("sparse_pe", "filter"): (3.234, 2.456),
    ("sparse_pe_dynamic", "ifmap"): (3.234, 2.456),
    ("tpu_128x128_ws", "ifmap"): (38.44, 34.17),      # 12 MiB, between 8 and 16 MiB
    ("tpu_128x128_ws", "filter"): (23.59, 19.38),     # 4 MiB, a table point
}


@pytest.mark.parametrize("name,operand", sorted(SHIPPED))
def test_shipped_configs_use_the_shared_table_at_the_documented_energies(name, operand):
    cfg = load_config(ROOT / "accel_configs" / f"{name}.yaml")
    assert cfg.energy == _table()
    kb = getattr(cfg.sram_kb, operand)
    read, write = SHIPPED[(name, operand)]
    assert cfg.energy.sram_pj_per_byte(kb, "read") == pytest.approx(read, rel=5e-4)
    assert cfg.energy.sram_pj_per_byte(kb, "write") == pytest.approx(write, rel=5e-4)


def test_a_scalesim_cfg_reads_with_the_same_table(tmp_path):
    from hwsim.interop.scalesim_cfg import to_scalesim_cfg

    path = tmp_path / "a.cfg"
    path.write_text(to_scalesim_cfg(load_config(ROOT / "accel_configs" / "systolic_32x32_os.yaml"), "a"))
    assert load_config(path).energy == _table()
