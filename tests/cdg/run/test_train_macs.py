"""Training MACs per step (cdg.run.train_macs) and the full accounting in target control."""
import pytest
import torch

from cdg.config import load_config
from cdg.gating.base import collect_records, gated_layers
from cdg.gating.calibration import measured_ratio
from cdg.gating.methods.fbs import fbs_keep_ratio
from cdg.gating.selection import build_gated_backbone
from cdg.models.resnet import build_backbone
from cdg.run.trainer import Trainer
from cdg.tracing.input_credit import input_credit
from cdg.tracing.inventory import conv_inventory
from cdg.train import main

from tests.cdg.gating.helpers import gated
from tests.cdg.helpers import records, tiny


def _dense_per_image(cfg):
    """Σ C_out H_out W_out C_in k² over the backbone's convs, from the shapes alone."""
    total = 0
    for info in conv_inventory(build_backbone(cfg.model), cfg.data.image_size):
        c_out, h, w = info.out_shape
        total += c_out * h * w * info.spec.in_channels * info.spec.kernel_size ** 2
    return total


@pytest.mark.parametrize("ssl,forwards", [("simclr", 2), ("byol", 4)])
def test_dense_run_logs_the_analytic_training_macs(tmp_path, ssl, forwards):
    # simclr: one encoder, two views; byol: online and target encoder, two views each
    args = tiny(tmp_path, ssl, f"method.name={ssl}", "eval.linear_epochs=0", "gate.trace_images=0")
    summary = main(args)
    cfg = load_config(None, args)
    expected = forwards * cfg.train.batch_size * _dense_per_image(cfg)
    for key in ("performed", "ideal", "ideal_full", "dense"):
        assert summary[f"train_macs_{key}_per_step"] == pytest.approx(expected, rel=1e-12)
        assert summary[f"train_macs_{key}_total"] == pytest.approx(expected * summary["steps"], rel=1e-12)
    logged = records(tmp_path / ssl, "train")
    assert logged and all(r["train_macs_performed"] == pytest.approx(expected, rel=1e-12) for r in logged)


def test_gated_step_counts_both_encoders_and_the_skips(tmp_path):
    cfg = load_config(None, gated(tmp_path, "fbs", "method.name=byol", "gate.method=fbs", "gate.target_reduction=2"))
    trainer = Trainer(cfg, tmp_path, resume=False)
    seen = []  # the records each backbone forward leaves, as the meter saw them
    hooks = [backbone.register_forward_hook(lambda m, a, o, b=backbone: seen.append((b, a[0].shape[0], collect_records(b))))
             for backbone in (trainer.model.backbone, trainer.model.target_backbone)]
    trainer.epoch = 2  # after warm-up and ramp: the final keep ratio
    images, _ = next(trainer.sources.train.iter_batches([torch.arange(cfg.train.batch_size)]))
    trainer._train_step(images)
    for hook in hooks:
        hook.remove()
    assert len(seen) == 4
    performed = ideal = full = 0.0
    for backbone, n, recs in seen:
        for info in conv_inventory(backbone, cfg.data.image_size):
            outputs = info.out_shape[0] * info.out_shape[1] * info.out_shape[2]
            if info.gate is None:
                performed += n * info.dense_macs
                ideal += n * info.dense_macs
            else:  # computed densely, scaled by pi everywhere, predictor and top-k on top
                performed += n * (info.dense_macs + info.overhead_macs + outputs)
                ideal += float(recs[info.name].macs["total"].sum())
        full += sum(float(c.sum()) for c in input_credit(backbone, recs).values())
    total = trainer.macs_total
    assert total["steps"] == 1
    assert total["performed"] == pytest.approx(performed, rel=1e-12)
    assert total["ideal"] == pytest.approx(ideal, rel=1e-12)
    assert total["ideal_full"] == pytest.approx(ideal - full, rel=1e-12)
    assert total["ideal_full"] < total["ideal"] < total["performed"]


def test_full_accounting_drives_the_controller(tmp_path):
    cfg = load_config(None, gated(tmp_path, "dg", "gate.method=dgnet", "gate.target_reduction=1.6"))
    trainer = Trainer(cfg, tmp_path, resume=False)
    controller = trainer.gates
    controller.begin_step(2.0)
    images, _ = next(trainer.sources.train.iter_batches([torch.arange(cfg.train.batch_size)]))
    trainer.model(*trainer.augment(images))
    views = [dict(v) for v in controller.records]
    _, logs = controller.loss(2.0)
    controller.end_step()
    dense = controller.dense_total
    expected = []
    for view in views:
        out = sum(float(r.macs["total"].double().mean()) for r in view.values())
        out += sum(i.dense_macs for i in controller.infos if i.name not in view)
        credit = sum(float(c.double().mean()) for c in input_credit(trainer.model.backbone, view).values())
        assert credit > 0
        expected.append((out - credit) / dense)
    assert logs["gate_ratio"] == pytest.approx(sum(expected) / 2, rel=1e-5)


def test_fbs_keep_ratio_meets_the_target_in_the_chosen_convention(tmp_path):
    images = torch.randn(16, 3, 16, 16)
    ratios = {}
    for convention in ("output", "full"):
        cfg = load_config(None, ["gate.method=fbs", "gate.target_reduction=2", f"gate.accounting={convention}"])
        torch.manual_seed(0)
        net = build_gated_backbone(cfg)
        infos = conv_inventory(net, cfg.data.image_size)
        ratios[convention] = fbs_keep_ratio(cfg), measured_ratio(net, images, infos, full=convention == "full")
        for _, layer in gated_layers(net):
            assert layer.keep == max(1, -(-round(ratios[convention][0] * layer.out_channels, 9) // 1))
    assert ratios["full"][0] > ratios["output"][0]  # the same target keeps more channels
    assert ratios["full"][1] == pytest.approx(0.5, rel=0.02)
    # output-only: the keep ratio of the linear formula this project always used (predictor = C_in C_out)
    dense = sum(i.dense_macs for i in infos)
    gated_macs = sum(i.dense_macs for i in infos if i.gate is not None)
    predictor = sum(i.spec.in_channels * i.spec.out_channels for i in infos if i.gate is not None)
    assert ratios["output"][0] == pytest.approx((0.5 * dense - (dense - gated_macs) - predictor) / gated_macs, rel=1e-12)
    assert ratios["output"][1] > ratios["full"][1] * 0.98  # its overheads are left out of the formula
