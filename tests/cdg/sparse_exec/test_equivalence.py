"""The sparse executor computes what the masked dense model computes: every method and structure,
every path a layer offers, batch 1 and N, NCHW and channels_last.

Tolerance: float32, max |sparse - masked dense| <= 1e-5 x max |masked dense| (the paths sum the
same products in another order)."""
from __future__ import annotations

import pytest
import torch

from cdg.sparse_exec.network import build_dense, build_sparse, executors, layer_inputs

from tests.cdg.sparse_exec.helpers import CASES, case_id, case_named, gated_backbone

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


@pytest.mark.parametrize("case", [case_named("cdg-call-s2"), case_named("fbs-k0.5"), case_named("dgnet-s2")], ids=case_id)
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


@pytest.mark.parametrize("grouping", ["shuffle", "first"])
@torch.no_grad()
def test_cgnet_grouping_selects_its_executor(grouping):
    """shuffle: the grouped executor, whose base is the grouped conv of the model and whose
    group_gather computes only each output group's complement channels; first: the plain split."""
    from cdg.sparse_exec.methods.cgnet import GroupedCGNetExecutor
    net = gated_backbone("cgnet", grouping=grouping)
    x = torch.randn(2, 3, 16, 16)
    inputs = layer_inputs(net, x)
    sparse = build_sparse(net)
    layers = executors(sparse)
    assert all(isinstance(ex, GroupedCGNetExecutor) == (grouping == "shuffle") for _, ex in layers)
    if grouping == "first":
        return
    for name, ex in layers:
        y_base, _ = ex.layer.grouped_partial_sums(inputs[name])
        assert torch.allclose(ex.split(inputs[name])[0], y_base, rtol=1e-5, atol=1e-6)
        ex.path = "group_gather"
        ex(inputs[name])
        grouped = ex.executed
        ex.path = "union_gather"
        ex(inputs[name])
        assert grouped < ex.executed, name  # complement only vs all C_in with zero taps


@pytest.mark.parametrize("spatial_block", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
@torch.no_grad()
def test_dgnet_linked_block(spatial_block, batch, channels_last):
    """One residual block (strided leader conv1, follower conv2): the sparse block equals the masked
    dense block on every path; the follower uses the leader's spatial mask and skips exactly the
    input channels the leader's channel mask zeroed in the whole batch."""
    net = gated_backbone("dgnet", spatial_block=spatial_block)
    x = torch.randn(batch, 3, 16, 16)
    if channels_last:
        x, net = x.contiguous(memory_format=torch.channels_last), net.to(memory_format=torch.channels_last)
    block = net.layer2[0]
    seen = {}
    hook = block.register_forward_pre_hook(lambda mod, inp: seen.__setitem__("x", inp[0]))
    net(x)
    hook.remove()
    block_in = seen["x"]
    reference = block(block_in)
    sparse_block = build_sparse(net).layer2[0]
    leader, follower = sparse_block.conv1, sparse_block.conv2
    assert not leader.follower and follower.follower and follower.direct
    for path in leader.candidates:
        leader.path = follower.path = path
        _check(sparse_block, reference, block_in)
        g_c, g_s = leader.gates
        assert torch.equal(g_c, block.conv1.record.extras["channel"] != 0)
        assert torch.equal(g_s, block.conv1.record.extras["spatial"] != 0)
        assert follower.gates[0] is None and torch.equal(follower.gates[1], g_s)
        assert torch.equal(follower.gates[1], block.conv2.record.extras["spatial"] != 0)
    leader.path = follower.path = "spatial_channel_gather"
    sparse_block(block_in)
    live = int(g_c.any(0).sum())
    b = spatial_block
    pixels = int(torch.repeat_interleave(torch.repeat_interleave(g_s, b, 1), b, 2)[:, :8, :8].sum())
    assert 0 < live < follower.layer.in_channels and 0 < pixels < batch * 64  # both masks switch work off
    assert follower.executed == pixels * live * follower.layer.out_channels * 9


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
@torch.no_grad()
def test_dgnet_bottleneck_followers(channels_last):
    """Bottleneck blocks with every conv gated: conv2 reads the leader's output (skips its zeroed
    channels), conv3 follows the same leader but reads conv2's output (checks its input instead)."""
    net = gated_backbone("dgnet", spatial_block=2, arch="resnet50", every_conv=True)
    x = torch.randn(2, 3, 16, 16)
    if channels_last:
        x, net = x.contiguous(memory_format=torch.channels_last), net.to(memory_format=torch.channels_last)
    reference = net(x)
    sparse = build_sparse(net)
    layers = executors(sparse)
    direct = {name.rsplit(".", 1)[-1]: ex.direct for name, ex in layers if name.startswith("layer1.0.") and ex.follower}
    assert direct == {"conv2": True, "conv3": False}
    for path in layers[0][1].candidates:
        for _, ex in layers:
            ex.path = path
        _check(sparse, reference, x)
