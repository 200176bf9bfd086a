"""The gated layers of every method (cdg.gating.methods, split, predictor, ops): exactness against their
definitions, gradients, DDP, precision, layout and torch.compile."""
from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from cdg.gating.base import full_resolution_mask
from cdg.gating.methods.cdg import cdg_decisions, cdg_gate, cdg_saliency
import cdg.gating.methods.cdg as cdg_method
from cdg.gating.ops import block_weights, expand_decisions, spatial_fraction

from tests.cdg.gating.helpers import METHODS, dense_out, make


# ----------------------------------------------------------------------------- exactness


SPLIT_CASES = [  # method, gate kwargs, stride, input size
    ("cdg", dict(groups=4), 1, 7),
    ("cdg", dict(groups=2, channel_block=4, spatial_block=2), 2, 9),
    ("cdg", dict(groups=3, channel_block=8, spatial_block=3), 1, 5),
    ("cgnet", dict(groups=4, grouping="first"), 2, 6),  # base = the first C_b inputs (shuffle: tests/cdg/gating/test_baselines.py)
    ("cgnet", dict(groups=2, grouping="first"), 1, 5),
]


@pytest.mark.parametrize("method, gate, stride, size", SPLIT_CASES)
def test_split_layers_are_dense_when_all_gates_on_and_base_only_when_off(method, gate, stride, size):
    layer = make(method, c_in=10, c_out=8, stride=stride, **gate).double()
    x = torch.randn(3, 10, size, size, dtype=torch.float64)
    c_b = layer.base_channels
    base = F.conv2d(x[:, :c_b], layer.weight[:, :c_b], None, stride, 1)

    layer.gating = False
    torch.testing.assert_close(layer(x), dense_out(layer, x))
    assert layer.record.mask.min() == 1 and not layer.record.gated
    layer.gating = True
    with torch.no_grad():
        layer.threshold.fill_(-math.inf)
    torch.testing.assert_close(layer(x), dense_out(layer, x))
    assert layer.record.mask.min() == 1
    macs = layer.record.macs
    assert torch.equal(macs["base"] + macs["conditional"], torch.full((3,), layer.dense_macs(size, size)))
    with torch.no_grad():
        layer.threshold.fill_(math.inf)
    torch.testing.assert_close(layer(x), base)
    assert layer.record.mask.max() == 0
    assert torch.equal(layer.record.macs["conditional"], torch.zeros(3, dtype=torch.int64))
    assert layer.record.soft_density.item() == 0.0


@pytest.mark.parametrize("method, gate, stride, size", SPLIT_CASES)
def test_gated_output_is_base_plus_conditional_exactly_where_the_full_mask_is_on(method, gate, stride, size):
    layer = make(method, c_in=10, c_out=8, stride=stride, **gate, init_threshold=0.0).double()
    x = torch.randn(2, 10, size, size, dtype=torch.float64)
    c_b = layer.base_channels
    y = layer(x)
    base = F.conv2d(x[:, :c_b], layer.weight[:, :c_b], None, stride, 1)
    cond = F.conv2d(x[:, c_b:], layer.weight[:, c_b:], None, stride, 1)
    on = full_resolution_mask(layer.record)
    assert 0 < on.float().mean() < 1  # a genuinely mixed mask
    torch.testing.assert_close(y, torch.where(on, base + cond, base))


def test_fbs_keeps_the_top_k_saliencies_and_scales_the_kept_channels():
    layer = make("fbs", c_in=6, c_out=10, keep_ratio=0.3).double()
    x = torch.randn(4, 6, 5, 5, dtype=torch.float64)
    y = layer(x)
    pi = layer.record.extras["saliency"]
    keep = layer.record.mask[:, :, 0, 0]
    assert (keep.sum(dim=1) == 3).all()  # k = ceil(0.3 * 10)
    for n in range(4):
        kept = set(keep[n].nonzero().flatten().tolist())
        assert kept == set(pi[n].topk(3).indices.tolist())
    torch.testing.assert_close(y, dense_out(layer, x) * (pi * keep).to(y.dtype)[:, :, None, None])
    torch.testing.assert_close(layer.record.saliency_mean, pi.mean().float())


def test_dgnet_computes_exactly_where_channel_and_spatial_gates_are_both_on():
    layer = make("dgnet", c_in=6, c_out=8, stride=2, spatial_block=2).double()
    with torch.no_grad():  # mixed gates
        layer.spatial_bias.fill_(0.0)
        layer.channel_fc2.bias.copy_(torch.linspace(-1.0, 1.0, 8))
    x = torch.randn(3, 6, 9, 9, dtype=torch.float64)
    y = layer(x)
    rec = layer.record
    on = full_resolution_mask(rec)
    assert 0 < on.float().mean() < 1
    torch.testing.assert_close(y, torch.where(on, dense_out(layer, x), torch.zeros_like(y)))
    expected = rec.extras["channel"][:, :, None, None] * rec.extras["spatial"][:, None]
    assert torch.equal(rec.mask, expected)
    torch.testing.assert_close(rec.soft_density_per_sample.detach(), on.double().mean(dim=(1, 2, 3)))


def test_cdg_matches_its_definition_with_pooled_standardised_saliency():
    """g = 1[standardise(pool_S,b(Y_base)) > Δ], checked against python loops (ragged blocks, S = 2)."""
    torch.manual_seed(1)
    y_base = torch.randn(2, 4, 5, 7, dtype=torch.float64)
    s, b = 2, 3
    sal = cdg_saliency(y_base, s, b)
    assert sal.shape == (2, 2, 2, 3)
    for n in range(2):
        pooled = torch.zeros(2, 2, 3, dtype=torch.float64)
        for d, i, j in itertools.product(range(2), range(2), range(3)):
            block = y_base[n, d * s : (d + 1) * s, i * b : (i + 1) * b, j * b : (j + 1) * b]
            pooled[d, i, j] = block.mean()
        ref = (pooled - pooled.mean()) / torch.sqrt(pooled.var(unbiased=False) + 1e-5)
        torch.testing.assert_close(sal[n].double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("block, hw", [((1, 1, 1), (5, 6)), ((4, 2, 2), (7, 5)), ((2, 3, 3), (4, 4)), ((8, 1, 1), (3, 3))])
@pytest.mark.parametrize("density_from", ["output", "g"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("chunked", [False, True])
def test_fused_cdg_backward_equals_autograd_of_the_straight_through_definition(
    block, hw, density_from, layout, chunked, monkeypatch, gate_backend
):
    """The fused node's gradients, whether the density term reaches it through its ρ output or
    through g, in one chunk or (``CHUNK_BYTES`` tiny) one sample at a time."""
    if chunked:
        monkeypatch.setattr(cdg_method, "CHUNK_BYTES", 1)
    torch.manual_seed(2)
    n, c = 3, 8
    y_base = torch.randn(n, c, *hw).contiguous(memory_format=layout).requires_grad_()
    y_cond = torch.randn(n, c, *hw).contiguous(memory_format=layout).requires_grad_()
    thr = (0.5 * torch.randn(c // block[0])).requires_grad_()
    w = torch.randn(n, c, *hw) + 0.5  # a non-zero mean makes the affine folding of the backward matter
    weights = block_weights(hw, block[1], block[2], "cpu")

    def loss(y, g):
        return (y * w).sum() + 3.0 * spatial_fraction(g, weights).sum()

    y, g, density = cdg_gate(y_base, y_cond, thr, block, alpha=4.0)
    torch.testing.assert_close(density, spatial_fraction(g, weights))
    fused_loss = (y * w).sum() + 3.0 * density.sum() if density_from == "output" else loss(y, g)
    fused = torch.autograd.grad(fused_loss, (y_base, y_cond, thr))
    g_ref = cdg_decisions(y_base, thr, block, alpha=4.0)
    y_ref = y_base + expand_decisions(g_ref, *block, hw) * y_cond
    ref = torch.autograd.grad(loss(y_ref, g_ref), (y_base, y_cond, thr))
    assert torch.equal(y, y_ref) and torch.equal(g, g_ref)
    for a, r in zip(fused, ref):
        torch.testing.assert_close(a, r, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("block", [(1, 1, 1), (2, 2, 2)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("chunked", [False, True])
def test_fused_cdg_gate_on_bfloat16_partial_sums_matches_float32_autograd(block, layout, chunked, monkeypatch):
    """Under autocast the partial sums are bfloat16: decisions are taken on the same values as in
    float32, and the gradients (lean float32-scratch backward for S = b = 1) agree with float32
    autograd of the definition to bfloat16 precision."""
    if chunked:
        monkeypatch.setattr(cdg_method, "CHUNK_BYTES", 1)
    lean_calls = []
    lean = cdg_method._CDGGate._backward_lean
    monkeypatch.setattr(cdg_method._CDGGate, "_backward_lean", staticmethod(
        lambda *args: lean_calls.append(1) or lean(*args)))
    torch.manual_seed(5)
    n, c, hw = 4, 8, (6, 5)
    y_base = torch.randn(n, c, *hw).to(torch.bfloat16).contiguous(memory_format=layout).requires_grad_()
    y_cond = torch.randn(n, c, *hw).to(torch.bfloat16).contiguous(memory_format=layout).requires_grad_()
    thr = (0.5 * torch.randn(c // block[0])).requires_grad_()
    w = torch.randn(n, c, *hw) + 0.5
    weights = block_weights(hw, block[1], block[2], "cpu")

    y, g, density = cdg_gate(y_base, y_cond, thr, block, alpha=4.0)
    assert y.dtype == torch.bfloat16 and g.dtype == density.dtype == torch.float32
    fused = torch.autograd.grad((y.float() * w).sum() + 3.0 * density.sum(), (y_base, y_cond, thr))
    assert [t.dtype for t in fused] == [torch.bfloat16, torch.bfloat16, torch.float32]
    assert len(lean_calls) == (block == (1, 1, 1))

    base32, cond32 = (t.detach().float().requires_grad_() for t in (y_base, y_cond))
    g_ref = cdg_decisions(base32, thr, block, alpha=4.0)
    y_ref = base32 + expand_decisions(g_ref, *block, hw) * cond32
    ref = torch.autograd.grad((y_ref * w).sum() + 3.0 * spatial_fraction(g_ref, weights).sum(), (base32, cond32, thr))
    assert torch.equal(g, g_ref.detach())
    torch.testing.assert_close(y.float(), y_ref.detach(), atol=2e-2, rtol=1e-2)
    for a, r in zip(fused, ref):
        torch.testing.assert_close(a.float(), r, atol=3e-2, rtol=2e-2)


@pytest.mark.parametrize("needs", ["base", "cond", "threshold"])
def test_fused_cdg_backward_with_only_some_inputs_needing_gradients(needs, monkeypatch, gate_backend):
    monkeypatch.setattr(cdg_method, "CHUNK_BYTES", 1)
    torch.manual_seed(3)
    y_base, y_cond, thr = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5), 0.3 * torch.randn(4)
    leaf = {"base": y_base, "cond": y_cond, "threshold": thr}[needs].requires_grad_()
    w = torch.randn(3, 4, 5, 5)
    y, g, density = cdg_gate(y_base, y_cond, thr, (1, 1, 1), alpha=4.0)
    (fused,) = torch.autograd.grad((y * w).sum() + density.sum(), leaf)
    g_ref = cdg_decisions(y_base, thr, (1, 1, 1), alpha=4.0)
    y_ref = y_base + g_ref * y_cond
    (ref,) = torch.autograd.grad((y_ref * w).sum() + spatial_fraction(g_ref, None).sum(), leaf)
    torch.testing.assert_close(fused, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("block", [(1, 1, 1), (2, 2, 2)])
def test_eval_gate_in_place_equals_the_training_forward(block, gate_backend):
    torch.manual_seed(4)
    y_base, y_cond, thr = torch.randn(5, 6, 7, 7), torch.randn(5, 6, 7, 7), 0.3 * torch.randn(6 // block[0])
    trained = cdg_gate(y_base.clone().requires_grad_(), y_cond, thr, block, alpha=4.0)
    with torch.no_grad():
        in_place = y_base.clone()
        evaluated = cdg_gate(in_place, y_cond, thr, block, alpha=4.0)
    assert evaluated[0].data_ptr() == in_place.data_ptr()  # no new full-size output
    for a, b in zip(trained, evaluated):
        assert torch.equal(a.detach(), b)
    assert 0 < evaluated[1].mean() < 1


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("method", METHODS)
def test_straight_through_gradients_reach_every_gate_parameter_and_both_weight_slices(method):
    gate = dict(init_threshold=0.0)
    if method in ("cdg", "dgnet"):
        gate["spatial_block"] = 2
    layer = make(method, c_in=8, c_out=8, **gate)
    x = torch.randn(4, 8, 6, 6, requires_grad=True)
    y = layer(x)
    (y * torch.randn_like(y)).sum().add(layer.record.soft_density).backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0
    if method in ("cdg", "cgnet"):
        c_b = layer.base_channels
        assert layer.weight.grad[:, :c_b].abs().sum() > 0 and layer.weight.grad[:, c_b:].abs().sum() > 0
        # dL/dΔ from the surrogate only: a density penalty pushes every threshold up
        layer.zero_grad()
        layer(x).sum().mul(0).add(layer.record.soft_density).backward()
        assert (layer.threshold.grad <= 0).all() and layer.threshold.grad.sum() < 0


@pytest.mark.parametrize("method", METHODS)
def test_ungated_layers_keep_every_parameter_in_the_graph_for_ddp(method):
    layer = make(method, groups=1) if method in ("cdg", "cgnet") else make(method)
    layer2 = make(method)
    for lyr in (layer, layer2):
        lyr.gating = False
        lyr(torch.randn(2, 8, 5, 5)).sum().backward()
        assert all(p.grad is not None for p in lyr.parameters())
    if method == "dgnet":  # all on: exactly the dense conv
        x = torch.randn(2, 8, 5, 5)
        torch.testing.assert_close(layer2(x), dense_out(layer2, x))


def test_ddp_without_find_unused_parameters_accepts_gated_and_ungated_steps(tmp_path):
    """World size 1 is enough: DDP's reducer still fails on a parameter that got no gradient."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        for method, groups in (("cdg", 4), ("cdg", 1), ("cgnet", 4), ("fbs", 4), ("dgnet", 4)):
            layer = make(method, groups=groups)
            model = torch.nn.parallel.DistributedDataParallel(layer)
            for gating in (False, True, True, False, False):  # warm-up, gated, back to dense
                layer.gating = gating
                model(torch.randn(2, 8, 5, 5)).sum().backward()
    finally:
        dist.destroy_process_group()


def test_soft_density_is_the_hard_density_in_the_forward():
    layer = make("cdg", channel_block=2, spatial_block=3, init_threshold=0.0)
    layer(torch.randn(3, 8, 7, 7))
    rec = layer.record
    full = full_resolution_mask(rec).float().mean(dim=(1, 2, 3))
    torch.testing.assert_close(rec.soft_density_per_sample.detach(), full)
    torch.testing.assert_close(rec.hard_density, full)
    assert rec.soft_density.requires_grad


# ----------------------------------------------------------------------------- precision, layout, compile


@pytest.mark.parametrize("method, structured", [(m, True) for m in METHODS] + [("cdg", False)])
def test_every_method_trains_under_bfloat16_autocast_and_channels_last(method, structured, gate_backend):
    gate = {"spatial_block": 2} if method in ("cdg", "dgnet") and structured else {}
    if method in ("cdg", "cgnet"):
        gate["init_threshold"] = 0.0  # a mixed mask
    layer = make(method, c_in=8, c_out=8, **gate)
    x = torch.randn(4, 8, 7, 7)
    torch.manual_seed(5)  # dgnet draws Gumbel noise in training: the same draws for both layouts
    reference = layer(x)
    x_cl = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    layer_cl = copy.deepcopy(layer).to(memory_format=torch.channels_last)
    torch.manual_seed(5)
    y_cl = layer_cl(x_cl)
    torch.testing.assert_close(y_cl, reference, atol=1e-5, rtol=1e-4)
    y_cl.square().mean().add(layer_cl.record.soft_density).backward()
    assert torch.isfinite(x_cl.grad).all()

    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x_cl.detach().requires_grad_())
        loss = y.float().square().mean() + layer.record.soft_density
    assert y.dtype == torch.bfloat16 and y.shape == reference.shape
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_torch_compile_of_a_cdg_layer_matches_eager():
    """Slow-ok (about 10-20 s on one CPU thread): dynamo + inductor, one layer, forward and backward, no graph break."""
    layer = make("cdg", channel_block=2, spatial_block=2, init_threshold=0.0)
    x = torch.randn(2, 8, 6, 6)
    try:
        compiled = torch.compile(layer, fullgraph=True)
        y = compiled(x)
    except Exception as exc:  # no working C++ toolchain / unsupported platform
        if "Unsupported" in type(exc).__name__ or "graph break" in str(exc).lower():
            raise  # a graph break is our bug, not the platform's
        pytest.skip(f"torch.compile unavailable here: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    record = layer.record
    assert record is not None and record.mask.shape == (2, 4, 3, 3)
    torch.testing.assert_close(y, layer(x))
    torch.testing.assert_close(record.mask, layer.record.mask)

    x_grad = x.clone().requires_grad_()
    compiled(x_grad).square().sum().add(layer.record.soft_density).backward()
    grads = [p.grad.clone() for p in layer.parameters()] + [x_grad.grad]
    layer.zero_grad()
    x_grad.grad = None
    layer(x_grad).square().sum().add(layer.record.soft_density).backward()
    for got, want in zip(grads, [p.grad for p in layer.parameters()] + [x_grad.grad]):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_torch_compile_of_an_unstructured_cdg_layer_in_eval_keeps_to_torch_ops(gate_backend):
    """The fused CPU kernels take raw pointers: inside a compiled graph the eval forward must not call them."""
    layer = make("cdg", init_threshold=0.0).eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        try:
            y = torch.compile(layer, fullgraph=True)(x)
        except Exception as exc:  # no working C++ toolchain / unsupported platform
            if "Unsupported" in type(exc).__name__ or "graph break" in str(exc).lower():
                raise
            pytest.skip(f"torch.compile unavailable here: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        mask = layer.record.mask
        torch.testing.assert_close(y, layer(x))
    assert 0 < mask.mean() < 1
    torch.testing.assert_close(mask, layer.record.mask)


def _tiny_gated_backbone(method):
    from cdg.config import load_config
    from cdg.gating.selection import build_gated_backbone

    torch.manual_seed(0)
    cfg = load_config(None, ["data.image_size=8", "model.width=0.125", f"gate.method={method}",
                             "gate.target_reduction=1.6"])
    return build_gated_backbone(cfg)


@pytest.mark.parametrize("method", ["fbs", "dgnet"])
def test_fbs_and_dgnet_zeros_reach_the_next_conv_whatever_the_batchnorm(method):
    """Both papers gate the normalised output: a skipped output is 0 after the block's BN and ReLU
    (gating the conv output *before* the BN lets BN(0) = β − γ μ/σ leak through)."""
    backbone = _tiny_gated_backbone(method)
    with torch.no_grad():
        for module in backbone.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # trained-looking statistics and affine
                module.running_mean.uniform_(0.5, 1.0)
                module.running_var.uniform_(0.5, 2.0)
                module.bias.fill_(1.0)
    block = backbone.layer1[0]
    inputs = {}
    block.conv2.register_forward_hook(lambda m, inp, out: inputs.__setitem__("x", inp[0]))
    backbone.eval()
    with torch.no_grad():
        backbone(torch.randn(8, 3, 8, 8))
    off = ~full_resolution_mask(block.conv1.record)
    assert off.any()
    assert bool((inputs["x"][off] == 0).all())
