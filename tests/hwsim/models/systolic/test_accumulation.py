"""Faithful partial-sum accumulation (the default) against hand counts on a small layer, and the
``scalesim`` mode's counting kept apart; separate DRAM read and write energies."""
import numpy as np
import pytest

from hwsim.models.systolic.counts import dense_layer_counts, gated_layer_counts
from hwsim.models.systolic.model import dense as dense_figures
from hwsim.trace import GateGrid
from hwsim.workload import conv_layer, lower
from tests.hwsim.helpers import BASE, tiny_config

# E = 100 output pixels, M = 12 filters, K = 72; on 8x8: 9 row folds over K, 2 column folds
LAYER = conv_layer(10, 10, 8, 12, 3, 1, 1, name="c")
E, M, RF = 100, 12, 9


def counts(**changes):
    return dense_layer_counts(lower(LAYER), tiny_config(**changes))


@pytest.mark.parametrize("dataflow", ["ws", "is"])
def test_ws_is_accumulate_in_sram_and_write_each_output_to_dram_once(dataflow):
    c = counts(dataflow=dataflow)
    assert c.sram_ofmap_writes == RF * E * M            # every row fold writes its partial sums
    assert c.sram_ofmap_reads == (RF - 1) * E * M       # and every fold after the first reads them back
    assert c.dram_ofmap_writes == E * M                 # the tile (100 x 8 or 12 x 8) fits in 2 kB
    assert c.dram_ofmap_reads == 0


def test_ws_spills_the_share_of_a_tile_the_ofmap_sram_cannot_hold():
    c = counts(dataflow="ws", sram_kb=dict(ifmap=2, filter=2, ofmap=0.5))   # 512 words; tile 100 x 8
    spilled = (1 - 512 / 800) * (RF - 1) * E * M
    assert c.dram_ofmap_reads == pytest.approx(spilled)
    assert c.dram_ofmap_writes == pytest.approx(E * M + spilled)


def test_os_writes_each_output_once_and_scalesim_adds_its_drain_slots():
    faithful, scalesim = counts(dataflow="os"), counts(dataflow="os", accumulation="scalesim")
    assert faithful.sram_ofmap_writes == E * M and faithful.sram_ofmap_reads == 0
    assert scalesim.sram_ofmap_writes == E * M + 13 * 2 * (8 + 8)   # ceil(100/8) x 2 folds x (rows + cols)
    assert faithful.cycles == scalesim.cycles and faithful.dram_ofmap_writes == E * M <= scalesim.dram_ofmap_writes


def test_scalesim_mode_drains_every_partial_sum_and_reads_none_back():
    c = counts(dataflow="ws", accumulation="scalesim")
    assert c.sram_ofmap_writes == RF * E * M and c.sram_ofmap_reads == 0 and c.dram_ofmap_reads == 0
    assert c.dram_ofmap_writes > 8 * E * M                # SCALE-Sim's drain of all nine folds


@pytest.mark.parametrize("dataflow", ["ws", "is"])
def test_gated_layer_with_every_gate_on_matches_the_dense_accumulation(dataflow):
    spec = conv_layer(10, 10, 8, 12, 3, 1, 1, name="g", gate=GateGrid(G=2, S=1, b=1))
    work, cfg = lower(spec), tiny_config(dataflow=dataflow)
    dense = dense_layer_counts(work, cfg)
    on = gated_layer_counts(work, cfg, np.ones((1, M, 10, 10), bool))[0]
    off = gated_layer_counts(work, cfg, np.zeros((1, M, 10, 10), bool))[0]
    for key in ("sram_ofmap_writes", "sram_ofmap_reads", "dram_ofmap_writes", "dram_ofmap_reads"):
        assert getattr(on, key) == getattr(dense, key), key
    assert off.dram_ofmap_writes == E * M                 # the base part still produces every output
    assert off.sram_ofmap_reads == off.sram_ofmap_writes - E * M < dense.sram_ofmap_reads


def test_dram_reads_and_writes_are_priced_separately():
    energy = {**BASE["energy"], "dram_read_pj_per_bit": 10.0, "dram_write_pj_per_bit": 20.0}
    cfg = tiny_config(dataflow="ws", sram_kb=dict(ifmap=2, filter=2, ofmap=0.5), energy=energy)
    c = dense_layer_counts(lower(LAYER), cfg)
    f = dense_figures(lower(LAYER), cfg)
    assert f.energy_pj["dram_ofmap"] == pytest.approx(c.dram_ofmap_writes * 8 * 20 + c.dram_ofmap_reads * 8 * 10)
    assert f.energy_pj["dram_ifmap"] == pytest.approx(c.dram_ifmap_reads * 8 * 10)
    assert f.dram_bytes == pytest.approx(c.dram_ifmap_reads + c.dram_filter_reads + c.dram_ofmap_writes
                                         + c.dram_ofmap_reads)
    single = dense_figures(lower(LAYER), tiny_config(dataflow="ws", sram_kb=dict(ifmap=2, filter=2, ofmap=0.5)))
    assert single.energy_pj["dram_ofmap"] == pytest.approx((c.dram_ofmap_writes + c.dram_ofmap_reads) * 8 * 20.3)


def test_the_issue_layer_writes_its_outputs_once_instead_of_every_fold():
    """16x16x128 -> 256 3x3 on a 32x32 WS array: SCALE-Sim drains 2,359,327 output words (36
    row folds of partial sums); the layer has 65,536 outputs, which is what faithful writes."""
    from hwsim.config import load_config

    cfg = load_config("accel_configs/systolic_32x32_os.yaml")
    work = lower(conv_layer(16, 16, 128, 256, 3, 1, 1, name="x"))
    faithful = dense_layer_counts(work, cfg.with_overrides(dataflow="ws"))
    scalesim = dense_layer_counts(work, cfg.with_overrides(dataflow="ws", accumulation="scalesim"))
    assert faithful.dram_ofmap_writes == 65536 and faithful.dram_ofmap_reads == 0
    assert scalesim.dram_ofmap_writes == 2359327
    assert faithful.cycles == scalesim.cycles  # this layer's drain never stalls the array
