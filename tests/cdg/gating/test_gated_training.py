"""Gated training: config checks, every gate method in every SSL method, exact resume, target control, traces."""
import json
from types import SimpleNamespace

import pytest
import torch

from cdg.config import load_config
from cdg.gating.base import gated_layers
from cdg.gating.calibration import calibrate, measured_ratio
from cdg.gating.controller import GateController
from cdg.gating.selection import gate_for
from cdg.tracing.inventory import conv_inventory
from cdg.models.resnet import ConvSpec
from cdg.run.trainer import Trainer
from cdg.train import main
from hwsim.trace import load_trace

from tests.cdg.gating.helpers import gated
from tests.cdg.helpers import records


def test_selection_follows_the_config():
    cfg = load_config(None, ["gate.method=cdg", "gate.target_reduction=2", "gate.channel_block=all",
                             "gate.stages={layer2: {channel_block: 4, spatial_block: 2}}"])
    conv = ConvSpec("layer1.0.conv1", 16, 16, 3, 1, 1, "conv")
    assert gate_for(conv, cfg.gate).channel_block == 16  # "all" = one decision per pixel
    staged = gate_for(ConvSpec("layer2.1.conv2", 32, 32, 3, 1, 1, "conv"), cfg.gate)
    assert (staged.channel_block, staged.spatial_block) == (4, 2)
    assert gate_for(ConvSpec("conv1", 3, 16, 3, 1, 1, "stem"), cfg.gate) is None
    assert gate_for(ConvSpec("layer2.0.shortcut.0", 16, 32, 1, 2, 0, "shortcut"), cfg.gate) is None
    named = load_config(None, ["gate.method=cdg", "gate.target_reduction=2", "gate.layers=[layer4.*]"])
    assert gate_for(conv, named.gate) is None
    assert gate_for(ConvSpec("layer4.0.conv1", 16, 16, 3, 1, 1, "conv"), named.gate) is not None


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["gate.method=cdg"], "needs gate.target_reduction"),
        (["gate.method=cdg", "gate.target_reduction=2", "gate.target_density=0.5"], "not both"),
        (["gate.method=cdg", "gate.target_reduction=2", "gate.channel_block=3"], "gate.channel_block=3 does not divide"),
        (["gate.method=cdg", "gate.target_reduction=2", "gate.groups=99"], "gate.groups=99 exceeds"),
        (["gate.method=cdg", "gate.target_reduction=20"], "base path"),
        (["gate.method=magic"], "gate.method"),
        (["gate.method=cdg", "gate.target_reduction=2", "gate.ramp_epochs=5"], "train.epochs"),
    ],
)
def test_impossible_gate_settings_fail_before_training(tmp_path, overrides, message):
    with pytest.raises(SystemExit) as exc:
        main(gated(tmp_path, "bad", *overrides))
    assert exc.value.code == 2
    assert not (tmp_path / "bad" / "checkpoints").exists()


def one_step(tmp_path, *overrides):
    cfg = load_config(None, gated(tmp_path, "step", *overrides))
    trainer = Trainer(cfg, tmp_path, resume=False)
    trainer.epoch = 2  # past warm-up and ramp: gates on at the final target
    images, _ = next(trainer.sources.train.iter_batches([torch.arange(cfg.train.batch_size)]))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    loss, logs = trainer._train_step(images)
    return trainer, before, loss, logs


@pytest.mark.parametrize("ssl", ["simclr", "moco", "byol", "simsiam"])
@pytest.mark.parametrize("gate", ["cdg", "cgnet", "fbs", "dgnet"])
def test_every_gate_method_trains_a_step_in_every_ssl_method(tmp_path, ssl, gate):
    trainer, before, loss, logs = one_step(tmp_path, f"method.name={ssl}", f"gate.method={gate}",
                                           "gate.target_reduction=1.6")
    assert torch.isfinite(loss)
    assert 0 < logs["gate_ratio"] <= 1.1 and logs["gate_target"] == pytest.approx(1 / 1.6)
    layers = gated_layers(trainer.model.backbone)
    assert layers
    changed = [name for name, _ in layers if not torch.equal(before[f"backbone.{name}.weight"],
                                                             trainer.model.state_dict()[f"backbone.{name}.weight"])]
    assert changed, "gated weights must receive gradients"
    if gate in ("cdg", "cgnet"):
        assert any(not torch.equal(before[f"backbone.{n}.threshold"], l.threshold) for n, l in layers)


def test_ema_thresholds_in_the_target_encoder(tmp_path):
    trainer, before, _, _ = one_step(tmp_path, "method.name=byol", "gate.method=cdg", "gate.target_reduction=1.6")
    name = gated_layers(trainer.model.backbone)[0][0]
    online = trainer.model.state_dict()[f"backbone.{name}.threshold"]
    target = trainer.model.state_dict()[f"target_backbone.{name}.threshold"]
    old = before[f"target_backbone.{name}.threshold"]
    assert not torch.equal(target, old)  # the target's thresholds follow the online ones by EMA
    m = trainer.model.current_momentum(trainer.global_step / trainer.total_steps)
    assert torch.allclose(target, m * old + (1 - m) * online, atol=1e-6)


def test_one_branch_ablation_runs_the_second_view_dense(tmp_path):
    cfg = load_config(None, gated(tmp_path, "one", "gate.method=cdg", "gate.target_reduction=1.6",
                                  "gate.branches=one", "gate.align_weight=1.0"))
    trainer = Trainer(cfg, tmp_path, resume=False)
    controller: GateController = trainer.gates
    controller.begin_step(2.0)
    images, _ = next(trainer.sources.train.iter_batches([torch.arange(cfg.train.batch_size)]))
    v1, v2 = trainer.augment(images)
    trainer.model(v1, v2)
    first, second = controller.records
    assert all(r.gated for r in first.values()) and not any(r.gated for r in second.values())
    assert all(bool(r.mask.all()) for r in second.values())
    loss, logs = controller.loss(2.0)
    assert "gate_align" in logs and torch.isfinite(loss)
    controller.end_step()


def test_gated_resume_is_bit_identical(tmp_path):
    args = ["method.name=moco", "gate.method=cdg", "gate.target_reduction=1.6", "gate.calibrate=false"]
    main(gated(tmp_path, "whole", *args))
    main(gated(tmp_path, "split", *args, "run.stop_after_epoch=2"))
    main(["--resume", str(tmp_path / "split")])
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=False)
    assert a["gate_controller"] == b["gate_controller"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_calibration_meets_the_target_on_held_out_images(tmp_path):
    summary = main(gated(tmp_path, "cal", "gate.method=cdg", "gate.target_reduction=2"))
    assert summary["target_reduction"] == 2
    assert abs(summary["reduction"] - 2) / 2 < 0.05  # measured on the evaluation split
    calibration = records(tmp_path / "cal", "calibration")[0]
    assert abs(calibration["ratio_after"] - 0.5) < 0.01


def test_calibrate_bisects_a_monotone_ratio(tmp_path):
    cfg = load_config(None, gated(tmp_path, "bis", "gate.method=cdg", "gate.target_density=0.7"))
    trainer = Trainer(cfg, tmp_path, resume=False)
    backbone = trainer.model.backbone
    images = torch.randn(64, 3, 8, 8)
    infos = conv_inventory(backbone, 8)
    result = calibrate(backbone, images, infos, 0.7)
    assert abs(result.ratio_after - 0.7) <= 0.005 * 0.7
    assert result.ratio_after == pytest.approx(measured_ratio(backbone, images, infos))
    assert result.held == {}  # one global shift was enough


def test_calibrate_keeps_the_closest_shift_when_no_layer_explains_the_jump(tmp_path, monkeypatch):
    import cdg.gating.calibration as calibration

    cfg = load_config(None, gated(tmp_path, "jump", "gate.method=cdg", "gate.target_density=0.5"))
    backbone = Trainer(cfg, tmp_path, resume=False).model.backbone
    first = next(layer for _, layer in gated_layers(backbone))
    start = float(first.threshold[0].detach())

    def step_macs(bb, images, infos, batch=256, full=False):  # network ratio jumps from 0.8 to 0.45 at a shift of 1.3
        return {"all": 0.8 if float(first.threshold[0].detach()) - start < 1.3 else 0.45}

    monkeypatch.setattr(calibration, "measured_layer_macs", step_macs)
    one_mac = SimpleNamespace(name="all", dense_macs=1)  # one image of one dense MAC: MACs = ratio
    result = calibration.calibrate(backbone, torch.zeros(1), [one_mac], 0.5)
    assert result.ratio_before == 0.8 and result.ratio_after == 0.45  # the closest ratio any shift gives
    assert step_macs(backbone, None, None)["all"] == result.ratio_after  # and the gates are left there
    assert float(first.threshold[0].detach()) - start == pytest.approx(result.shift)


def test_calibrate_holds_a_layer_whose_gates_all_flip_together(tmp_path):
    """A DGNet layer whose predictors ignore the image is all on or all off, and the target lies
    inside its jump: no global shift meets it, holding that layer on and shifting the others does."""
    cfg = load_config(None, gated(tmp_path, "flip", "gate.method=dgnet", "gate.target_density=0.6"))
    backbone = Trainer(cfg, tmp_path, resume=False).model.backbone
    images = torch.randn(64, 3, 8, 8)
    infos = conv_inventory(backbone, 8)
    calibrate(backbone, images, infos, 0.5)  # the other layers at moderate density
    leaders = [item for item in gated_layers(backbone) if not item[1].is_follower]  # a block's predictors
    name, layer = max(leaders, key=lambda item: item[1].weight.numel())

    def flip_at(bias: float) -> float:  # constant logits: the layer is on while bias - shift > 0
        with torch.no_grad():
            layer.spatial_weight.zero_()
            layer.channel_fc2.weight.zero_()
            layer.channel_fc2.bias.fill_(bias)
            layer.spatial_bias.fill_(bias)
        return measured_ratio(backbone, images, infos)

    ratio_off, ratio_on = flip_at(-1e-4), flip_at(1e-4)
    target = 0.5 * (ratio_on + ratio_off)
    assert ratio_on - ratio_off > 0.05 * target  # far outside the 0.5 % tolerance of a global shift

    result = calibrate(backbone, images, infos, target)
    assert abs(result.ratio_after - target) <= 0.005 * target
    assert name in result.held and result.held[name] < result.shift  # held on the dense side
    assert result.ratio_after == pytest.approx(measured_ratio(backbone, images, infos))
    assert layer.record.mask.min() == 1  # the held layer is on everywhere, on every image


def test_gated_ddp_two_gloo_processes(tmp_path):
    from tests.cdg.helpers import run_cli

    result = run_cli(
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "cdg.train",
        *gated(tmp_path, "ddp", "gate.method=cdg", "gate.target_reduction=1.6", "eval.linear_epochs=1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=False)
    assert payload["world_size"] == 2 and "gate_controller" in payload
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert abs(summary["reduction"] - 1.6) / 1.6 < 0.05
    assert load_trace(tmp_path / "ddp" / "trace").n_mask_images == 8


def test_fbs_top_k_follows_the_target_ramp_instead_of_jumping(tmp_path):
    """FBS used to switch from all channels to its final k when the warm-up ended (a step from
    ratio 1 to the target in one optimiser step); k now falls with the scheduled target."""
    cfg = load_config(None, gated(tmp_path, "fbs", "gate.method=fbs", "gate.target_reduction=2",
                                  "train.epochs=4", "gate.ramp_epochs=2"))
    trainer = Trainer(cfg, tmp_path, resume=False)
    controller: GateController = trainer.gates
    layers = gated_layers(trainer.model.backbone)
    ks = []
    for epoch in (1.0, 1.5, 2.0, 2.5, 3.0, 3.5):
        controller.begin_step(epoch)
        ks.append([layer.keep_now for _, layer in layers])
        controller.end_step()
    assert all(k == layer.out_channels for k, (_, layer) in zip(ks[0], layers))  # ramp start: dense
    assert ks[-2] == ks[-1] == [layer.keep for _, layer in layers]  # ramp end: the final k
    assert any(layer.keep < k < layer.out_channels for k, (_, layer) in zip(ks[2], layers))
    assert all(a >= b for before, after in zip(ks, ks[1:]) for a, b in zip(before, after))
