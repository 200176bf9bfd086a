"""The sparse executor computes what the masked dense model computes: every method and structure,
every path a layer offers, batch 1 and N, NCHW and channels_last.

Tolerance: float32, max |sparse - masked dense| <= 1e-5 x max |masked dense| (the paths sum the
same products in another order)."""
from __future__ import annotations

import pytest
import torch

from cdg.sparse_exec.network import build_dense, build_sparse, executors

from tests.cdg.sparse_exec.helpers import CASES, case_id, gated_backbone

RTOL = 1e-5


def _check(sparse, reference, x):
    out = sparse(x)
    scale = reference.abs().max()
    assert scale > 0
    assert (out - reference).abs().max() <= RTOL * scale


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
@torch.no_grad()
def test_every_path_equals_masked_dense(case, batch, channels_last):
    method, gate = case
    net = gated_backbone(method, **gate)
    x = torch.randn(batch, 3, 16, 16)
    if channels_last:
        x, net = x.contiguous(memory_format=torch.channels_last), net.to(memory_format=torch.channels_last)
    reference = net(x)
    sparse = build_sparse(net)
    layers = executors(sparse)
    paths = sorted({p for _, ex in layers for p in ex.candidates})
    for path in paths:
        for _, ex in layers:
            ex.path = path if path in ex.candidates else ex.candidates[0]
        _check(sparse, reference, x)
    densities = [ex.gate_density() for _, ex in layers]
    assert 0.1 < sum(densities) / len(densities) < 0.9  # the gates really switch work off


@pytest.mark.parametrize("case", [CASES[1], CASES[7], CASES[9]], ids=case_id)
@torch.no_grad()
def test_gather_paths_execute_less_than_dense(case):
    method, gate = case
    net = gated_backbone(method, **gate)
    sparse = build_sparse(net)
    x = torch.randn(2, 3, 16, 16)
    sparse(x)
    for name, ex in executors(sparse):
        assert ex.path != "dense_masked"
        assert ex.executed < ex.dense_macs, name


@torch.no_grad()
def test_dense_network_is_the_ungated_conv():
    net = gated_backbone("cdg", channel_block="all", spatial_block=2)
    dense = build_dense(net)
    from cdg.gating.base import set_gating
    set_gating(net, False)
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(dense(x), net(x), rtol=1e-4, atol=1e-5)


def test_training_mode_is_refused():
    from hwsim.trace.errors import UserError
    net = gated_backbone("cdg").train()
    with pytest.raises(UserError, match="eval mode"):
        build_sparse(net)
