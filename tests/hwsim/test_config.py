import pytest
import yaml

from hwsim.config import load_config, parse_config
from hwsim.trace.errors import HwsimError
from tests.hwsim.helpers import ROOT, config_dict


@pytest.mark.parametrize("path", sorted((ROOT / "accel_configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load_and_cite_their_energy_source(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert "Horowitz" in cfg.energy.source and cfg.energy.process_nm > 0


def test_required_configs_exist():
    assert load_config(ROOT / "accel_configs/systolic_32x32_os.yaml").dataflow == "os"
    tpu = load_config(ROOT / "accel_configs/tpu_128x128_ws.yaml")
    assert (tpu.array.rows, tpu.array.cols, tpu.dataflow) == (128, 128, "ws")


def _err(data):
    with pytest.raises(HwsimError) as exc:
        parse_config(data, "cfg.yaml")
    assert exc.value.source == "cfg.yaml"
    assert "\n" not in exc.value.one_line()
    return exc.value


def test_unknown_dataflow():
    assert _err(config_dict(dataflow="rs")).field == "dataflow"


@pytest.mark.parametrize("field,value", [("array", {"rows": 0, "cols": 8}), ("array", {"rows": 8, "cols": -4}),
                                         ("clock_mhz", 0), ("sram_kb", {"ifmap": 0, "filter": 2, "ofmap": 2})])
def test_zero_or_negative_sizes(field, value):
    e = _err(config_dict(**{field: value}))
    assert e.field.startswith(field)


def test_missing_energy_entry():
    data = config_dict()
    del data["energy"]["dram_pj_per_bit"]
    e = _err(data)
    assert e.field == "energy.dram_pj_per_bit" and e.message == "missing"


def test_unknown_field_and_unsorted_sram_table():
    assert _err(config_dict(turbo=True)).field == "turbo"
    data = config_dict()
    data["energy"]["sram"] = list(reversed(data["energy"]["sram"]))
    assert _err(data).field == "energy"


def test_tiny_sram_and_compact_without_index():
    assert _err(config_dict(sram_kb={"ifmap": 0.01, "filter": 2, "ofmap": 2})).field == "sram_kb.ifmap"
    assert _err(config_dict(sparse={"mode": "compact"})).field == "sparse"


def test_sram_energy_interpolation_is_log_linear():
    cfg = parse_config(config_dict(), "x")
    assert cfg.energy.sram_pj_per_byte(8, "read") == pytest.approx(1.25)
    assert cfg.energy.sram_pj_per_byte(16, "read") == pytest.approx((1.25 + 2.5) / 2)
    assert cfg.energy.sram_pj_per_byte(64, "write") == pytest.approx(2.5 + 1.25 / 2)


def test_invalid_yaml_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(HwsimError) as exc:
        load_config(p)
    assert exc.value.source == str(p)
    p.write_text(yaml.safe_dump(config_dict(word_bytes={"ifmap": 1, "filter": 1})))
    with pytest.raises(HwsimError) as exc:
        load_config(p)
    assert exc.value.field == "word_bytes.ofmap"


def test_energy_table_is_shared_and_fields_beside_it_override():
    import copy

    from hwsim.config import parse_config
    from tests.hwsim.helpers import BASE

    data = copy.deepcopy(BASE)
    data["energy"] = {"table": "horowitz_45nm"}
    cfg = parse_config(data, "t")
    assert cfg.energy.mac_pj == 0.3 and cfg.energy.dram_pj_per_bit == 20.3 and "Horowitz" in cfg.energy.source
    data["energy"] = {"table": "horowitz_45nm", "static_mw": 5.0, "dram_write_pj_per_bit": 22.0}
    cfg = parse_config(data, "t")
    assert cfg.energy.static_mw == 5.0 and cfg.energy.dram_write_pj() == 22.0 and cfg.energy.mac_pj == 0.3


def test_unknown_energy_table_names_the_field():
    import copy

    import pytest

    from hwsim.config import parse_config
    from hwsim.trace.errors import HwsimError
    from tests.hwsim.helpers import BASE

    data = copy.deepcopy(BASE)
    data["energy"] = {"table": "tsmc_3nm"}
    with pytest.raises(HwsimError, match="energy.*unknown energy table.*horowitz_45nm"):
        parse_config(data, "t")
