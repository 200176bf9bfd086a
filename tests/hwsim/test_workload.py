import numpy as np
import pytest

from hwsim.api import simulate_network
from hwsim.trace.errors import HwsimError
from hwsim.graph import build_graph, live_bytes
from hwsim.networks import NETWORKS, get_network
from hwsim.trace import GateGrid
from hwsim.models.systolic.counts import Counts
from hwsim.models.systolic.model import energy_pj
from hwsim.workload import conv_layer, linear_layer, lower
from tests.hwsim.helpers import tiny_config


def test_conv_lowering_padded_and_unpadded_agree():
    a = lower(conv_layer(32, 32, 64, 128, 3, 2, 1)).gemm
    b = lower(conv_layer(34, 34, 64, 128, 3, 2, 0)).gemm
    assert (a.E, a.M, a.K) == (b.E, b.M, b.K) == (256, 128, 576)
    assert a.in_h_used == 33 and a.ifmap_footprint() == 33 * 33 * 64
    one = lower(conv_layer(32, 32, 64, 128, 1, 2, 0)).gemm
    assert one.ifmap_footprint() == 16 * 16 * 64  # 1x1 stride 2 reads every other pixel


def test_groups_and_gate_split():
    g = lower(conv_layer(8, 8, 16, 32, 3, 1, 1, groups=4))
    assert (g.gemm.K, g.gemm.M, g.groups) == (36, 8, 4)
    gated = lower(conv_layer(8, 8, 16, 32, 3, 1, 1, gate=GateGrid(G=4, S=4)))
    assert (gated.gemm.K_base, gated.gemm.K_cond) == (36, 108)
    assert lower(linear_layer(512, 10)).gemm.E == 1


def test_bad_shapes_fail_with_field():
    with pytest.raises(HwsimError) as exc:
        conv_layer(0, 8, 3, 4)
    assert exc.value.field == "in_h"
    with pytest.raises(HwsimError):
        conv_layer(8, 8, 6, 4, groups=4)
    with pytest.raises(HwsimError) as exc:
        get_network("vgg")
    assert exc.value.field == "name"


@pytest.mark.parametrize("name,gmacs", [("resnet18_cifar", 0.5554), ("resnet18_imagenet", 1.8141),
                                        ("resnet50_imagenet", 4.0892), ("googlenet", 1.5827)])
def test_builtin_networks_have_the_known_mac_counts(name, gmacs):
    layers = NETWORKS[name]()
    assert sum(s.dense_macs for s in layers) / 1e9 == pytest.approx(gmacs, abs=5e-4)
    graph = build_graph(layers)
    assert graph.number_of_nodes() == len(layers)


def test_googlenet_modules_concatenate_to_the_published_widths():
    # Szegedy et al. 2015, Table 1: output depth of each inception module, and 1.5 G multiply-adds
    layers = {s.name: s for s in get_network("googlenet")}
    widths = {m: sum(layers[f"inception_{m}.{b}"].out_shape[0] for b in ("1x1", "3x3", "5x5", "pool_proj"))
              for m in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")}
    assert widths == {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528, "4e": 832, "5a": 832, "5b": 1024}
    assert layers["inception_4a.1x1"].in_shape == (480, 14, 14) and layers["inception_5b.3x3"].out_shape == (384, 7, 7)
    assert layers["fc"].in_shape == (1024, 1, 1)


def test_residual_tensors_stay_alive():
    layers = get_network("resnet18_cifar")
    live = live_bytes(layers, 1)
    # inside block layer1.0, the block input (conv1's output) is still alive for the residual add
    assert live["layer1.0.conv2"] > live["layer1.0.conv1"]
    assert live["layer1.0.conv2"] >= 3 * 64 * 32 * 32


def test_energy_from_counts_by_hand():
    cfg = tiny_config()
    c = Counts(cycles=1000, macs=100, sram_ifmap_reads=10, sram_filter_reads=20, sram_ofmap_writes=5,
               dram_ifmap_reads=4, dram_filter_reads=2, dram_ofmap_writes=1)
    e = energy_pj(c, cfg)
    sram = 1.25  # 2 kB is below the table's smallest SRAM (8 kB): clamped to it
    assert e["mac"] == pytest.approx(30)
    assert e["rf"] == pytest.approx(90)
    assert e["sram_ifmap"] == pytest.approx(10 * sram)
    assert e["dram_ifmap"] == pytest.approx(4 * 8 * 20.3)
    assert e["static"] == pytest.approx(5.0 * 1000 / 1000 * 1e3)  # 5 mW for 1 us = 5 nJ
    assert e["total"] == pytest.approx(sum(v for k, v in e.items() if k != "total"))


def test_dense_network_run_is_deterministic():
    cfg = tiny_config(array={"rows": 16, "cols": 16}, sram_kb={"ifmap": 64, "filter": 64, "ofmap": 64})
    a = simulate_network("resnet18_cifar", cfg).totals()
    b = simulate_network("resnet18_cifar", cfg).totals()
    assert np.isnan(a.pop("zero_work_removed")) and np.isnan(b.pop("zero_work_removed"))  # no gated work
    assert a == b and a["speedup"] == 1.0 and a["macs"] == a["dense_macs"]
    assert np.isclose(a["utilisation"], a["macs"] / a["cycles"] / 256)
