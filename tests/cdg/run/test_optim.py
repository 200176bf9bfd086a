import math

import pytest
import torch

from cdg.run.optim import LARS, build_optimizer, param_groups, peak_lr, warmup_cosine
from types import SimpleNamespace


def test_warmup_cosine_shape():
    f = warmup_cosine(total_steps=100, warmup_steps=10, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(100) == pytest.approx(0.1)
    values = [f(s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_bias_and_bn_are_excluded_from_decay():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    decay, no_decay = param_groups(model, weight_decay=0.1, exclude_bias_bn=True)
    assert [p.shape for p in decay["params"]] == [torch.Size([3, 4])]
    assert no_decay["weight_decay"] == 0 and no_decay["lars_exclude"]
    assert len(param_groups(model, 0.1, exclude_bias_bn=False)) == 1


def test_lars_step_is_trust_ratio_scaled():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    w.grad = torch.tensor([0.0, 1.0])  # ||g|| = 1
    opt = LARS([w], lr=1.0, momentum=0.0, weight_decay=0.0, eta=0.1)
    opt.step()
    # step = lr * eta * ||w|| / ||g|| * g = 0.5 * g
    assert torch.allclose(w.detach(), torch.tensor([3.0, 3.5]))


def test_lars_excluded_group_is_plain_sgd():
    b = torch.nn.Parameter(torch.tensor([1.0]))
    b.grad = torch.tensor([2.0])
    opt = LARS([{"params": [b], "lars_exclude": True, "weight_decay": 0.0}], lr=0.5, momentum=0.0)
    opt.step()
    assert b.item() == pytest.approx(0.0)


def test_linear_lr_scaling_and_sgd_build():
    cfg = SimpleNamespace(name="sgd", lr=0.3, lr_scaling="linear", weight_decay=1e-4, momentum=0.9,
                          lars_eta=0.02, exclude_bias_bn=True)
    assert peak_lr(cfg, 512) == pytest.approx(0.6)
    opt = build_optimizer(torch.nn.Linear(2, 2), cfg, 512)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["lr"] == pytest.approx(0.6)
