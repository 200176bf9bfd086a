"""Per-image adaptivity: the distribution of per-image MAC ratios against a hand computation."""
import numpy as np
import pytest

from cdg.tracing.adaptivity import per_image_ratios, ratio_distribution


def test_distribution_by_hand():
    d = ratio_distribution(np.array([0.5, 0.6, 0.7, 0.8]))
    assert d["n_images"] == 4 and d["mean"] == pytest.approx(0.65)
    assert d["std"] == pytest.approx(np.sqrt((0.15**2 + 0.05**2) * 2 / 4))  # population std
    assert (d["min"], d["max"]) == (0.5, 0.8)
    assert d["quantiles"]["q50"] == pytest.approx(0.65)  # linear between 0.6 and 0.7
    assert d["quantiles"]["q25"] == pytest.approx(0.575)  # position 0.75 between 0.5 and 0.6
    assert d["quantiles"]["q05"] == pytest.approx(0.515)
    assert sum(d["hist_counts"]) == 4 and len(d["hist_edges"]) == len(d["hist_counts"]) + 1
    assert d["hist_edges"][0] == 0.5 and d["hist_edges"][-1] == pytest.approx(0.8)
    assert d["hist_counts"][0] == 1 and d["hist_counts"][-1] == 1


def test_constant_ratio_has_one_bin_and_no_spread():
    d = ratio_distribution(np.full(5, 0.5))
    assert d["std"] == 0.0 and d["hist_counts"] == [5]


def test_per_image_ratios_add_layers_and_subtract_the_credit():
    conv = [np.array([10.0, 20.0]), np.array([30.0, 30.0])]
    overhead = [np.array([1.0, 1.0]), np.array([0.0, 0.0])]
    credit = [np.zeros(2), np.array([5.0, 0.0])]
    d = per_image_ratios(conv, overhead, credit, dense_total=100.0)
    assert d["output"]["min"] == pytest.approx(0.41) and d["output"]["max"] == pytest.approx(0.51)
    assert d["full"]["min"] == pytest.approx(0.36) and d["full"]["max"] == pytest.approx(0.51)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="non-empty finite"):
        ratio_distribution(np.array([]))
    with pytest.raises(ValueError, match="dense MACs"):
        per_image_ratios([np.ones(1)], [np.ones(1)], [np.ones(1)], 0.0)
