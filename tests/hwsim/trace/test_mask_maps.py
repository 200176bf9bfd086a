"""Per-stage gate maps and the input proxy from a trace's stored masks (the committed digits trace)."""
from pathlib import Path

import numpy as np
import pytest

from hwsim.trace import load_trace
from hwsim.trace.errors import UserError
from hwsim.trace.mask_maps import input_proxy, stage_gate_maps

TRACE = Path(__file__).resolve().parents[2] / "data" / "cdg_digits_trace"


def test_stage_maps_average_channels_then_the_stages_layers():
    trace = load_trace(TRACE)
    maps = stage_gate_maps(trace, 3)
    assert list(maps) == ["layer1", "layer2", "layer3", "layer4"]
    assert {s: m.shape for s, m in maps.items()} == {"layer1": (3, 16, 16), "layer2": (3, 8, 8),
                                                     "layer3": (3, 4, 4), "layer4": (3, 2, 2)}
    names = ["layer2.0.conv1", "layer2.0.conv2", "layer2.1.conv1", "layer2.1.conv2"]
    by_hand = sum(trace.layer(n).gate_masks()[:3].astype(np.float64).mean(axis=1) for n in names) / 4
    assert np.allclose(maps["layer2"], by_hand, atol=1e-6)
    assert 0.0 < float(maps["layer1"].mean()) < 1.0


def test_input_proxy_is_the_first_stage_input_activity():
    trace = load_trace(TRACE)
    proxy = input_proxy(trace, 2)
    assert proxy.shape == (2, 16, 16)
    assert np.allclose(proxy, trace.layer("layer1.0.conv1").act_masks[:2].mean(axis=1))


def test_asking_for_more_images_than_stored_is_one_line():
    trace = load_trace(TRACE)
    with pytest.raises(UserError, match="stores masks of 64 images, 65 asked for"):
        stage_gate_maps(trace, 65)
    with pytest.raises(UserError, match="images: must be an integer >= 1"):
        stage_gate_maps(trace, 0)
