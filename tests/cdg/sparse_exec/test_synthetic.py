"""Synthetic gated models: structures, seeded masks at the requested density, and the trace they
write holding exactly the masks the executor ran."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hwsim.trace import load_trace
from hwsim.trace.errors import UserError
from cdg.gating.base import gated_layers
from cdg.sparse_exec.commands import execute_synthetic
from cdg.sparse_exec.network import build_sparse, executors
from cdg.sparse_exec.synthetic import build_synthetic, density_for_reduction, draw_masks, parse_structure


def test_parse_structure():
    assert parse_structure("pixel") == (None, 1)
    assert parse_structure("block4") == (None, 4)
    assert parse_structure("channel8") == (8, 1)
    assert parse_structure("channel8_block2") == (8, 2)
    assert parse_structure("unstructured") == (1, 1)
    with pytest.raises(UserError, match="--structure"):
        parse_structure("blocks")


@pytest.mark.parametrize("structure", ["pixel", "block2", "channel4", "unstructured"])
@torch.no_grad()
def test_masks_have_the_density_and_the_executor_matches(structure):
    net = build_synthetic("resnet18", 0.125, "cifar", structure, 4, seed=1)
    draw_masks(net, 16, 2, 0.5, seed=1)
    for _, layer in gated_layers(net):
        assert abs(float(layer.fixed_mask.mean()) - 0.5) <= 0.5 / layer.fixed_mask[0].numel() + 1e-9
    x = torch.randn(2, 3, 16, 16)
    reference = net(x)
    sparse = build_sparse(net)
    assert (sparse(x) - reference).abs().max() <= 1e-5 * reference.abs().max()


@torch.no_grad()
def test_density_zero_runs_only_the_base_path():
    net = build_synthetic("resnet18", 0.125, "cifar", "block2", 4, seed=0)
    draw_masks(net, 16, 1, 0.0, seed=0)
    sparse = build_sparse(net)
    sparse(torch.randn(1, 3, 16, 16))
    for _, ex in executors(sparse):
        if ex.path != "dense_masked":
            assert ex.executed == ex.dense_macs * ex.layer.base_channels // ex.layer.in_channels


def test_density_for_reduction_reaches_it():
    net = build_synthetic("resnet18", 0.25, "imagenet", "block2", 4, seed=0)
    d = density_for_reduction(net, 64, 2.0)
    assert 0.0 < d < 0.5
    with pytest.raises(UserError, match="--reduction"):
        density_for_reduction(net, 64, 10.0)


def test_execute_synthetic_writes_trace_and_execution(tmp_path):
    doc = execute_synthetic(tmp_path, "resnet18", 0.125, "cifar", 16, "block2", 0.4, None, 4, batch=2, warmup=0,
                            repetitions=1, threads=None, progress=False)
    on_disk = json.loads((tmp_path / "execution.json").read_text())
    assert on_disk["version"] == 1 and on_disk["kind"] == "synthetic" and on_disk["trace"] == "trace"
    assert on_disk["max_abs_error"] <= 1e-5 * on_disk["reference_max_abs"]
    assert set(on_disk["total"]) >= {"dense_ms", "sparse_ms", "speedup"}
    trace = load_trace(tmp_path / "trace")
    assert [row["name"] for row in doc["layers"]] == [spec.name for spec in trace.specs]
    assert trace.n_mask_images == 2
    net = build_synthetic("resnet18", 0.125, "cifar", "block2", 4, seed=0)
    draw_masks(net, 16, 2, 0.4, seed=0)
    for name, layer in gated_layers(net):
        from cdg.gating.base import full_resolution_mask
        traced = trace.layer(name).gate_masks()
        net(torch.zeros(2, 3, 16, 16))
        assert np.array_equal(traced, full_resolution_mask(layer.record).numpy())
    by_name = {row["name"]: row for row in doc["layers"]}
    assert by_name["conv1"]["path"] == "dense"
    assert 0.3 < by_name["layer1.0.conv1"]["density"] < 0.5


def test_bad_synthetic_input_is_one_line(tmp_path):
    with pytest.raises(UserError, match="--density"):
        execute_synthetic(tmp_path, "resnet18", 0.125, "cifar", 16, "block2", 1.5, None, 4, batch=1, warmup=0,
                          repetitions=1, threads=None, progress=False)
    with pytest.raises(UserError, match="--batch"):
        execute_synthetic(tmp_path, "resnet18", 0.125, "cifar", 16, "block2", 0.5, None, 4, batch=0, warmup=0,
                          repetitions=1, threads=None, progress=False)
