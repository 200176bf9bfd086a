"""hwsim.costs: the energy / traffic / roofline arithmetic every model prices its accesses with."""
import pytest

from hwsim import costs
from tests.hwsim.helpers import tiny_config


def _acc(**changes):
    base = dict(macs=100.0, sram_ifmap_read=10.0, sram_filter_read=20.0, sram_ofmap_write=5.0, sram_index_read=2.0,
                dram_ifmap_read=8.0, dram_filter_read=16.0, dram_ofmap_write=4.0)
    base.update(changes)
    return costs.Accesses(**base)


def test_roofline_takes_the_slower_of_compute_and_transfer():
    assert costs.bytes_per_cycle(16, 1000) == 16.0
    assert costs.roofline(10.0, 320.0, 16.0) == 20.0 and costs.roofline(30.0, 320.0, 16.0) == 30.0
    assert costs.dram_bytes(_acc()) == 28.0


def test_energy_components_sum_and_the_optional_gate_component():
    cfg = tiny_config()
    e = costs.energy_pj(_acc(), cfg.energy, cfg.sram_kb, cfg.clock_mhz, 1000.0)
    assert list(e) == ["mac", "rf", "sram_ifmap", "sram_filter", "sram_ofmap", "sram_fill", "sram_drain", "index",
                       "dram_ifmap", "dram_filter", "dram_ofmap", "static", "total"]
    assert e["mac"] == 100 * 0.3 and e["dram_ifmap"] == 8 * 8 * 20.3
    assert e["static"] == pytest.approx(5.0 * 1000 / 1000 * 1e3)
    assert e["total"] == sum(v for k, v in e.items() if k != "total")
    g = costs.energy_pj(_acc(), cfg.energy, cfg.sram_kb, cfg.clock_mhz, 1000.0, gate_pj=7.0)
    assert list(g)[8] == "gate" and g["total"] == pytest.approx(e["total"] + 7.0)
    assert costs.traffic_bytes(_acc())["sram_index_read"] == 2.0
