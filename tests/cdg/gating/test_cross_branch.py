"""CDG's cross-branch consistency (gate.cross_branch) and per-channel saliency normalisation
(gate.saliency_norm): the term's zeros and support, the invariance, and training with each."""
import json

import pytest
import torch

from cdg.config import load_config
from cdg.data.view_geometry import ViewGeometry
from cdg.gating.base import gated_layers
from cdg.gating.cross_branch import layer_consistency, one_way
from cdg.gating.methods.cdg import standardise_channels
from cdg.run.trainer import Trainer
from cdg.train import main

from tests.cdg.gating.helpers import gated, make
from tests.cdg.helpers import records


def geometry(boxes, flips):
    return ViewGeometry(torch.tensor(boxes, dtype=torch.float32), torch.tensor(flips))


def test_consistency_is_zero_for_identical_views_and_their_masks():
    g = geometry([[0.1, 0.0, 0.9, 0.8], [0.0, 0.0, 1.0, 1.0]], [True, False])
    masks = (torch.rand(2, 3, 4, 4) > 0.5).float()
    assert float(layer_consistency(masks, masks.clone(), g, g)) == pytest.approx(0.0, abs=1e-7)


def test_consistency_counts_disagreement_in_the_overlap_only():
    a = geometry([[0.0, 0.0, 0.5, 1.0]], [False])  # left half of the image
    b = geometry([[0.0, 0.0, 1.0, 1.0]], [False])  # whole image: a is entirely inside b
    g_a = torch.ones(1, 1, 4, 4)
    g_b = torch.ones(1, 1, 4, 8)
    g_b[..., 4:] = 0.0  # b's right half, which a does not show, is off
    assert float(layer_consistency(g_a, g_b, a, b)) == pytest.approx(0.0, abs=1e-7)  # freedom there
    g_b[..., 0] = 0.0  # b's first column (inside a's crop) now disagrees with a
    assert float(one_way(g_a, g_b, a, b)) > 0 and float(layer_consistency(g_a, g_b, a, b)) > 0
    c = geometry([[0.6, 0.0, 1.0, 1.0]], [False])  # disjoint from a
    assert float(layer_consistency(g_a, torch.zeros(1, 1, 4, 4), a, c)) == 0.0


def test_consistency_by_hand_with_a_flip():
    a = geometry([[0.0, 0.0, 1.0, 1.0]], [False])
    b = geometry([[0.0, 0.0, 1.0, 1.0]], [True])  # the same crop, mirrored
    g_a = torch.tensor([[[[1.0, 0.0]]]])
    assert float(layer_consistency(g_a, g_a.clone(), a, b)) == pytest.approx(1.0)  # every cell disagrees
    assert float(layer_consistency(g_a, g_a.flip(-1), a, b)) == pytest.approx(0.0, abs=1e-7)


def test_consistency_gradient_reaches_the_thresholds():
    layer = make("cdg", groups=2)
    x = torch.randn(2, 8, 6, 6)
    layer(x)
    first = layer.record.decisions
    layer(torch.randn(2, 8, 6, 6))
    second = layer.record.decisions
    g = ViewGeometry.identity(2)
    layer_consistency(first, second, g, g).backward()
    assert layer.threshold.grad is not None and layer.threshold.grad.abs().sum() > 0


def test_channel_normalisation_makes_decisions_invariant_to_a_channels_scale_and_offset():
    layer = make("cdg", c_in=8, c_out=8, groups=2, channel_block=4, saliency_norm="channel")
    plain = make("cdg", c_in=8, c_out=8, groups=2, channel_block=4)
    torch.manual_seed(1)
    y = torch.randn(3, 8, 6, 6)
    scaled = y.clone()
    scaled[:, 2] = 50.0 * scaled[:, 2] + 7.0
    with torch.no_grad():
        assert torch.equal(layer._decide(y, (4, 1, 1)), layer._decide(scaled, (4, 1, 1)))
        assert not torch.equal(plain._decide(y, (4, 1, 1)), plain._decide(scaled, (4, 1, 1)))  # what it fixes
    z = standardise_channels(y)
    assert torch.allclose(z.mean(dim=(2, 3)), torch.zeros(3, 8), atol=1e-5)
    assert torch.allclose(z.var(dim=(2, 3), correction=0), torch.ones(3, 8), atol=1e-3)


def test_channel_normalised_layer_trains_through_the_eager_path():
    layer = make("cdg", groups=2, saliency_norm="channel")
    x = torch.randn(4, 8, 6, 6, requires_grad=True)
    y = layer(x)
    (y.square().mean() + layer.record.soft_density).backward()
    assert layer.threshold.grad.abs().sum() > 0 and x.grad is not None
    on = layer.record.full_resolution()
    with torch.no_grad():
        base = torch.nn.functional.conv2d(x[:, :4], layer.weight[:, :4], padding=1)
        cond = torch.nn.functional.conv2d(x[:, 4:], layer.weight[:, 4:], padding=1)
    assert torch.allclose(y.detach(), base + on * cond, atol=1e-5)


@pytest.mark.parametrize("overrides, message", [
    (["gate.method=cgnet", "gate.cross_branch=overlap_consistency"], "needs gate.method cdg"),
    (["gate.method=fbs", "gate.saliency_norm=channel"], "needs gate.method cdg"),
    (["gate.method=cdg", "gate.saliency_norm=batch"], "gate.saliency_norm"),
])
def test_options_outside_cdg_are_refused(overrides, message):
    from hwsim.trace.errors import UserError
    with pytest.raises(UserError, match=message):
        load_config(None, ["gate.target_reduction=2", *overrides])


def test_a_training_step_with_overlap_consistency_logs_and_uses_it(tmp_path):
    cfg = load_config(None, gated(tmp_path, "step", "gate.method=cdg", "gate.target_reduction=1.6",
                                  "gate.cross_branch=overlap_consistency", "gate.cross_branch_weight=5"))
    trainer = Trainer(cfg, tmp_path, resume=False)
    trainer.epoch = 2
    images, _ = next(trainer.sources.train.iter_batches([torch.arange(cfg.train.batch_size)]))
    _, logs = trainer._train_step(images)
    assert 0 < logs["gate_consistency"] < 1
    controller = trainer.gates
    with pytest.raises(RuntimeError, match="geometry"):
        controller.begin_step(2.0)  # no geometry
        v1, v2 = trainer.augment(images)
        trainer.model(v1, v2)
        controller.loss(2.0)


@pytest.mark.parametrize("option", ["gate.cross_branch=overlap_consistency", "gate.saliency_norm=channel"])
def test_a_tiny_run_with_each_option_finishes(tmp_path, option):
    summary = main(gated(tmp_path, "opt", "gate.method=cdg", "gate.target_reduction=1.6", option))
    assert summary["reduction"] > 1.2
    assert json.loads((tmp_path / "opt" / "summary.json").read_text())["per_image_mac_ratio"]["full"]["n_images"] > 0
    if "cross_branch" in option:
        assert any("gate_consistency" in r for r in records(tmp_path / "opt", "train"))
