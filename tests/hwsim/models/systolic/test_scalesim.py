"""Dense layers agree with SCALE-Sim v3 (the reference systolic simulator, dev extra):
cycles and SRAM reads/writes exactly, DRAM traffic within 2 %."""
import pytest

from hwsim.api import simulate_layer
from hwsim.interop.scalesim_ref import run_scalesim
from hwsim.models.systolic.counts import dense_layer_counts
from hwsim.workload import conv_layer, linear_layer, lower
from tests.hwsim.helpers import tiny_config

import scalesim  # noqa: F401  (a dev dependency: these tests must run in CI, never skip)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

LAYERS = [
    conv_layer(10, 10, 8, 12, 3, 1, 1, name="c3x3_s1"),          # sizes that do not divide the array
    conv_layer(16, 16, 6, 20, 3, 2, 1, name="c3x3_s2"),
    conv_layer(9, 9, 16, 10, 1, 2, 0, name="c1x1_s2"),            # strided 1x1 shortcut
    conv_layer(6, 6, 24, 16, 1, 1, 0, name="c1x1_s1"),
    conv_layer(12, 12, 16, 40, 3, 1, 0, name="c3x3_big"),          # filter spills the working set
    linear_layer(48, 10, name="fc"),
]
ARRAYS = [(8, 8), (4, 16), (16, 4)]


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize("rows,cols", ARRAYS)
def test_dense_layers_match_scalesim(tmp_path, dataflow, rows, cols):
    cfg = tiny_config(dataflow=dataflow, array={"rows": rows, "cols": cols}, accumulation="scalesim")
    ref = run_scalesim(LAYERS, cfg, tmp_path)
    for spec, r in zip(LAYERS, ref):
        c = dense_layer_counts(lower(spec), cfg)
        assert r.stall_cycles == 0
        assert (c.cycles, c.sram_ifmap_reads, c.sram_filter_reads, c.sram_ofmap_writes) == \
            (r.cycles, r.ifmap_sram_reads, r.filter_sram_reads, r.ofmap_sram_writes), spec.name
        for mine, theirs in ((c.dram_ifmap_reads, r.ifmap_dram_reads), (c.dram_filter_reads, r.filter_dram_reads),
                             (c.dram_ofmap_writes, r.ofmap_dram_writes)):
            assert abs(mine - theirs) <= 0.02 * theirs, (spec.name, mine, theirs)


def test_api_figures_equal_model_counts(tmp_path):
    cfg = tiny_config(dataflow="ws", accumulation="scalesim")
    spec = LAYERS[1]
    res = simulate_layer(spec, cfg)
    ref = run_scalesim([spec], cfg, tmp_path)[0]
    assert res.cycles == ref.cycles
    assert res.macs == spec.dense_macs
    assert res.utilisation == pytest.approx(spec.dense_macs / ref.cycles / 64)
