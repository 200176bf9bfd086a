"""CDG's fused CPU gate kernels (``cdg.gating.native``): built where a compiler exists, taken when
they apply and only then, equal to the eager torch path and to float64 autograd of the definition,
independent of the thread count, and a clean fallback when they cannot be built."""
from __future__ import annotations

import copy
import os
import shutil

import pytest
import torch

from cdg.gating.methods.cdg import cdg_gate
from cdg.gating.native import kernels, loader
from cdg.gating.ops import sample_stats
from cdg.gating.selection import build_gated_conv
from cdg.gating.spec import make_gate
from cdg.models.resnet import ConvSpec


@pytest.fixture
def kernel(monkeypatch):
    monkeypatch.delenv(loader.ENV_SWITCH, raising=False)
    if loader.library() is None:
        pytest.skip("the fused CPU gate kernel cannot be built here")


@pytest.fixture
def calls(monkeypatch):
    """Counts calls of the kernels' Python entry points."""
    counts = {"forward": 0, "backward": 0}
    for name, fn in (("forward", kernels.gate_forward), ("backward", kernels.gate_backward)):
        def counted(*args, _fn=fn, _name=name, **kwargs):
            counts[_name] += 1
            return _fn(*args, **kwargs)
        monkeypatch.setattr(kernels, f"gate_{name}", counted)
    return counts


def test_the_kernel_builds_where_a_cxx_compiler_exists(monkeypatch):
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler on this machine: the eager path is used (tested in test_gating)")
    monkeypatch.delenv(loader.ENV_SWITCH, raising=False)
    assert loader.library() is not None


def _inputs(shape, layout, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    y_base = torch.randn(shape, generator=gen, dtype=dtype).contiguous(memory_format=layout)
    y_cond = torch.randn(shape, generator=gen, dtype=dtype).contiguous(memory_format=layout)
    thr = 0.5 * torch.randn(shape[1], generator=gen, dtype=dtype)
    weight = (torch.randn(shape, generator=gen, dtype=dtype) + 0.5).contiguous(memory_format=layout)
    return y_base, y_cond, thr, weight


def _gate_and_grads(y_base, y_cond, thr, weight, alpha=4.0):
    leaves = [t.detach().clone().requires_grad_() for t in (y_base, y_cond, thr)]
    y, g, density = cdg_gate(*leaves, (1, 1, 1), alpha)
    loss = (y * weight).sum() + 3.0 * density.sum()
    return y.detach(), g, density.detach(), torch.autograd.grad(loss, leaves)


def _reference(y_base, y_cond, thr, weight, alpha=4.0):
    """float64 autograd of the straight-through definition (hard forward, sigmoid surrogate)."""
    leaves = [t.detach().double().requires_grad_() for t in (y_base, y_cond, thr)]
    p = leaves[0]
    mean = p.mean(dim=(1, 2, 3), keepdim=True)
    s = (p - mean) / (p.var(dim=(1, 2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
    margin = s - leaves[2].view(1, -1, 1, 1)
    soft = torch.sigmoid(alpha * margin)
    g = (margin > 0).double() + soft - soft.detach()
    y = p + g * leaves[1]
    loss = (y * weight.double()).sum() + 3.0 * g.mean(dim=(1, 2, 3)).sum()
    return margin.detach(), y.detach(), torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("shape", [(4, 16, 9, 7), (3, 32, 2, 2), (2, 5, 1, 1), (5, 3, 4, 6)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_fused_kernels_equal_the_eager_path_and_the_float64_definition(shape, layout, kernel, calls, monkeypatch):
    inputs = _inputs(shape, layout)
    y, g, density, grads = _gate_and_grads(*inputs)
    assert calls == {"forward": 1, "backward": 1}
    monkeypatch.setenv(loader.ENV_SWITCH, "0")
    y_eager, g_eager, density_eager, grads_eager = _gate_and_grads(*inputs)
    assert calls == {"forward": 1, "backward": 1}  # the switch really turns the kernels off

    margin, y_ref, grads_ref = _reference(*inputs)
    decided = margin.abs() > 1e-4  # elements whose decision float32 rounding cannot flip
    assert decided.float().mean() > 0.99 and 0 < g.mean() < 1
    assert torch.equal(g[decided], (margin > 0).float()[decided])
    assert torch.equal(g, g_eager)  # the same decisions as the eager path (statistics agree to ~1 ulp)
    assert torch.equal(y, y_eager) and y.stride() == y_eager.stride()
    torch.testing.assert_close(density, density_eager)
    torch.testing.assert_close(y.double(), y_ref, atol=1e-5, rtol=1e-5)
    for got, eager, want in zip(grads, grads_eager, grads_ref):
        assert got.stride() == eager.stride()
        torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(got, eager, atol=2e-5, rtol=1e-4)


def test_the_backward_writes_gradients_over_donated_partial_sums_only_when_autograd_frees_them(kernel):
    y_base, y_cond, thr, weight = _inputs((3, 8, 5, 5), torch.channels_last, seed=6)
    _, _, _, expected = _gate_and_grads(y_base, y_cond, thr, weight)

    def run(retain: bool):
        leaves = [t.clone().requires_grad_() for t in (y_base, y_cond, thr)]
        y, _, density = cdg_gate(*leaves, (1, 1, 1), 4.0, donate=True)
        loss = (y * weight).sum() + 3.0 * density.sum()
        grads = torch.autograd.grad(loss, leaves, retain_graph=retain)
        untouched = torch.equal(leaves[0], y_base) and torch.equal(leaves[1], y_cond)
        again = torch.autograd.grad(loss, leaves) if retain else None  # (this last one may donate)
        return leaves, grads, again, untouched

    leaves, grads, _, untouched = run(retain=False)
    assert not untouched
    assert grads[0].data_ptr() == leaves[1].data_ptr() and grads[1].data_ptr() == leaves[0].data_ptr()
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)

    leaves, grads, again, untouched = run(retain=True)  # a second backward reads the saved partial sums again
    assert untouched
    assert grads[0].data_ptr() != leaves[1].data_ptr() and grads[1].data_ptr() != leaves[0].data_ptr()
    for first, second, want in zip(grads, again, expected):
        assert torch.equal(first, second)
        torch.testing.assert_close(first, want, atol=1e-6, rtol=1e-6)


def test_a_cdg_layer_backward_twice_with_retain_graph_gives_the_same_gradients(kernel, calls):
    torch.manual_seed(1)
    layer = build_gated_conv(ConvSpec("layer1.0.conv2", 8, 8, 3, 1, 1, "conv"), make_gate("cdg", init_threshold=0.0))
    loss = layer(torch.randn(4, 8, 6, 6)).square().mean() + layer.record.soft_density
    first = torch.autograd.grad(loss, list(layer.parameters()), retain_graph=True)
    second = torch.autograd.grad(loss, list(layer.parameters()))
    assert calls["backward"] == 2
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_fused_kernels_do_not_depend_on_the_thread_count(kernel):
    """Samples are split between threads, each sample's sums stay in one thread: bit for bit."""
    inputs = _inputs((6, 8, 5, 5), torch.contiguous_format, seed=3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _gate_and_grads(*inputs)
        torch.set_num_threads(3)
        three = _gate_and_grads(*inputs)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip([*one[:3], *one[3]], [*three[:3], *three[3]]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", ["float64", "strided", "pooled", "gradient into g"])
def test_inputs_the_kernels_do_not_cover_take_the_eager_path(case, kernel, calls):
    y_base, y_cond, thr, weight = _inputs((3, 8, 6, 6), torch.contiguous_format, seed=4,
                                          dtype=torch.float64 if case == "float64" else torch.float32)
    if case == "strided":  # every other channel of a wider tensor: not dense
        y_base, y_cond = (torch.cat([t, t], dim=1)[:, ::2] for t in (y_base, y_cond))
        assert kernels._layout(y_base) is None
    block = (2, 1, 1) if case == "pooled" else (1, 1, 1)
    leaves = [t.detach().requires_grad_() for t in (y_base, y_cond, thr[: 8 // block[0]])]  # keeps strides
    y, g, density = cdg_gate(*leaves, block, 4.0)
    loss = (y * weight.to(y.dtype)).sum() + (g.sum() if case == "gradient into g" else 0.0)
    grads = torch.autograd.grad(loss, leaves)
    assert all(torch.isfinite(t).all() for t in grads)
    if case == "gradient into g":  # the forward is fused, the backward (with dL/dg) is not
        assert calls == {"forward": 1, "backward": 0}
    else:
        assert calls == {"forward": 0, "backward": 0}


def test_the_kernels_surrogate_derivative_matches_float64(kernel):
    """sigma'(m) = e / (1 + e)^2, e = exp(-|m|), with the kernel's own vectorised exp."""
    m = torch.cat([torch.linspace(-100.0, 100.0, 400_001), torch.tensor([0.0, -87.0, 87.0, -87.5, 1e-30])])
    got = kernels.sigmoid_grad(m).double()
    ref = torch.sigmoid(m.double()) * torch.sigmoid(-m.double())
    inside = m.abs() <= 87.0
    rel = ((got - ref).abs() / ref)[inside]
    assert rel.max() < 5e-7, rel.max()
    assert torch.equal(got[~inside], torch.zeros_like(got[~inside]))  # flushed to 0 beyond |m| = 87
    assert got[m == 0.0].eq(0.25).all()


def test_native_sample_stats_match_float64(kernel):
    p = 3.0 + 2.0 * torch.randn(4, 8, 7, 7)
    mean, std = sample_stats(p)
    ref = p.double()
    torch.testing.assert_close(mean.double(), ref.mean(dim=(1, 2, 3), keepdim=True), atol=1e-6, rtol=1e-6)
    want = (ref.var(dim=(1, 2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
    torch.testing.assert_close(std.double(), want, atol=1e-6, rtol=1e-6)


def test_a_cdg_layer_trains_the_same_with_and_without_the_kernels(kernel, calls, monkeypatch):
    torch.manual_seed(0)
    layer = build_gated_conv(ConvSpec("layer1.0.conv1", 8, 16, 3, 1, 1, "conv"), make_gate("cdg", init_threshold=0.0))
    x = torch.randn(4, 8, 6, 6)

    def step(net):
        inp = x.clone().requires_grad_()
        out = net(inp)
        (out.square().mean() + net.record.soft_density).backward()
        return out.detach(), net.record.mask, [p.grad for p in net.parameters()] + [inp.grad]

    fused = step(copy.deepcopy(layer))
    assert calls["forward"] == 1 and calls["backward"] == 1
    monkeypatch.setenv(loader.ENV_SWITCH, "0")
    eager = step(copy.deepcopy(layer))
    assert torch.equal(fused[0], eager[0]) and torch.equal(fused[1], eager[1])
    for a, b in zip(fused[2], eager[2]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_a_failed_build_warns_once_and_falls_back(monkeypatch):
    from torch.utils import cpp_extension

    def broken(*args, **kwargs):
        raise RuntimeError("Ninja is required to load C++ extensions\n(long explanation)")

    monkeypatch.setattr(cpp_extension, "load", broken)
    with pytest.warns(RuntimeWarning, match="could not be built \\(Ninja is required to load C\\+\\+ extensions\\)"):
        assert loader._library.__wrapped__() is None
    monkeypatch.setattr(loader, "library", lambda: None)
    y_base, y_cond, thr, weight = _inputs((2, 4, 3, 3), torch.contiguous_format)
    assert not kernels.usable(y_base, y_cond)
    y, g, _ = cdg_gate(y_base.clone(), y_cond, thr, (1, 1, 1), 4.0)  # (no grad: in place on its input)
    assert torch.equal(y, y_base + g * y_cond) and 0 < g.mean() < 1


def test_a_compiler_without_the_vector_flags_gets_the_portable_build(kernel, monkeypatch):
    real, tried = loader._build, []

    def picky(name, flags):
        tried.append(flags)
        if flags:
            raise RuntimeError("c++: error: unrecognized command-line option '-mavx2'")
        return real(name, flags)

    monkeypatch.setattr(loader, "_build", picky)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    lib = loader._library.__wrapped__()
    assert lib is not None and tried == [loader._ARCH_FLAGS["AVX2"], []]
    assert "cdg_gate_cpu_default_torch" in lib._name


def test_the_environment_switch_turns_the_kernels_off(monkeypatch):
    monkeypatch.setenv(loader.ENV_SWITCH, "off")
    assert not loader.enabled() and loader.library() is None
    assert not kernels.usable(torch.zeros(2, 3, 4, 4))
