"""The trace cross-checks (``hwsim.trace.checks``): paths stay inside the trace, statistics agree
with themselves and with the mask sample, and the bound used for a sample is tight, not loose."""
from dataclasses import replace

import numpy as np
import pytest

from hwsim.trace import GateGrid, compute_stats, make_layer
from hwsim.trace.checks import (
    check_stats,
    check_stats_against_masks,
    expected_effective_macs,
    member_path,
    per_image_density,
)
from hwsim.trace.errors import HwsimError
from hwsim.trace.masks import expand_gate_blocks

SPEC = make_layer("g", "conv", (8, 7, 7), 10, 3, 1, 1, gate=GateGrid(G=2, S=4, b=3))  # cropped edge blocks


def test_per_image_density_matches_the_expanded_masks():
    blocks = np.random.default_rng(0).random(SPEC.gate_grid(5)) < 0.4
    full = expand_gate_blocks(blocks, SPEC)
    assert np.allclose(per_image_density(SPEC, blocks), full.reshape(5, -1).mean(axis=1))


def test_effective_macs_follow_from_the_density():
    full = expand_gate_blocks(np.random.default_rng(1).random(SPEC.gate_grid(3)) < 0.5, SPEC)
    stats = compute_stats(SPEC, full, None)
    assert stats.effective_macs == pytest.approx(expected_effective_macs(SPEC, stats.gate_density_mean))
    check_stats(SPEC, stats, "t")
    with pytest.raises(HwsimError, match="effective_macs"):
        check_stats(SPEC, replace(stats, effective_macs=stats.effective_macs / 2), "t")
    with pytest.raises(HwsimError, match="histogram"):
        check_stats(SPEC, replace(stats, gate_density_hist=(0,) * 9 + (3,)), "t")


def test_a_sample_of_the_statistics_images_passes_and_the_bound_is_tight():
    rng = np.random.default_rng(2)
    blocks = rng.random(SPEC.gate_grid(40)) < rng.uniform(0.1, 0.9, size=(40, 1, 1, 1))
    full = compute_stats(SPEC, expand_gate_blocks(blocks, SPEC), None)
    check_stats_against_masks(SPEC, full, blocks, "t")  # the same images: equal
    for n in (1, 5, 39):  # the first n of them: within std * sqrt((N - n) / n)
        check_stats_against_masks(SPEC, full, blocks[:n], "t")
    # the bound is attained by the extreme subset: the n images farthest above the mean
    dens = per_image_density(SPEC, blocks)
    top = blocks[np.argsort(dens)[-1:]]
    check_stats_against_masks(SPEC, replace(full, gate_density_hist=()), top, "t")
    with pytest.raises(HwsimError, match="gate_density_mean"):
        check_stats_against_masks(SPEC, replace(full, gate_density_hist=(), gate_density_std=0.0), top, "t")
    with pytest.raises(HwsimError, match="n_images"):
        check_stats_against_masks(SPEC, replace(full, n_images=3), blocks, "t")


def test_the_histogram_must_count_every_sampled_image():
    blocks = np.zeros(SPEC.gate_grid(4), dtype=bool)
    blocks[:, :, :, :] = True
    stats = compute_stats(SPEC, expand_gate_blocks(blocks, SPEC), None)
    with pytest.raises(HwsimError, match="gate_density_hist"):
        check_stats_against_masks(SPEC, replace(stats, gate_density_hist=(4,) + (0,) * 9), blocks, "t")


@pytest.mark.parametrize("rel", ["/etc/passwd", "../x", "masks/../../x", "", "a\\b", "a\x00b", 5, None])
def test_paths_outside_the_trace_are_refused(tmp_path, rel):
    with pytest.raises(HwsimError):
        member_path(tmp_path, rel, "t", "file")


def test_links_are_followed_only_inside_the_trace(tmp_path):
    root = tmp_path / "trace"
    (root / "masks").mkdir(parents=True)
    (root / "masks" / "real.npz").write_bytes(b"x")
    (root / "masks" / "inside.npz").symlink_to(root / "masks" / "real.npz")
    (tmp_path / "outside.npz").write_bytes(b"x")
    (root / "masks" / "out.npz").symlink_to(tmp_path / "outside.npz")
    assert member_path(root, "masks/inside.npz", "t", "file") == root / "masks" / "inside.npz"
    with pytest.raises(HwsimError, match="outside"):
        member_path(root, "masks/out.npz", "t", "file")
