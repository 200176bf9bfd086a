"""Feature boosting and suppression (FBS; Gao et al., ICLR 2019): the gate method and ``FBSConv``.

``FBSConv`` (a ``PredictorGatedConv``, see ``cdg.gating.predictor``)::

    p    = avgpool(x),  ŝ = p / rms_c(p)        per-sample scale of the predictor input removed
    π    = ReLU(A · ŝ + a)                      A: C_out x C_in, a: C_out (bias initialised to 1,
                                                so π starts near 1: boosting ~ identity)
    keep = top-k(π) per sample, k = ceil(keep_ratio · C_out)
    Y    = (π ⊙ keep) ⊙ BN(conv(x, W))          per-sample, per-channel scaling of the *normalised*
                                                output (the paper's π · (norm(conv) + β)); suppressed
                                                channels are not computed and are exactly 0

The top-k mask carries no gradient; π does (through the kept channels). Its regulariser is an
L1 penalty on π: ``record.saliency_mean`` is the mean of π. With ``gating = False`` all channels
are kept (k = C_out) and still scaled by π, so switching gating on does not change the function
of the kept channels. During training ``keep_now`` (set by the GateController) lowers k from
C_out to its final value along the target ramp.

Its keep ratio is set from the target before the backbone is built (``FBS.backbone_settings``):
the target is met by k, not by shifting gates, so there is no integral control and no calibration.
Under ``gate.accounting: full`` (the default) k is found by bisection on the full-convention ratio of
a probe backbone (``full_keep_ratio``): a dropped channel also saves its consumer's input MACs, so
the same target keeps more channels than under the output-only convention.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hwsim.trace.errors import UserError
from cdg.gating.base import gated_layers
from cdg.gating.predictor import PredictorGatedConv, PredictorMethod, adopt_output_norms, input_scale, spatial_mean
from cdg.gating.selection import gate_for, gated_conv_factory
from cdg.gating.spec import GateSpec, is_real
from cdg.models.resnet import ConvSpec, build_backbone
from cdg.tracing.input_credit import input_credit
from cdg.tracing.inventory import conv_inventory


@dataclass(frozen=True)
class FBSSettings:
    keep_ratio: float = 0.5
    """Fraction of output channels kept per sample (top-k, k = ceil(keep_ratio * C_out))."""


def fbs_keep_ratio(cfg) -> float:
    """FBS keep ratio that meets the target network ratio (predictor MACs included); ``cfg``: a ``cdg.config.Config``."""
    if cfg.gate.keep_ratio is not None:
        return cfg.gate.keep_ratio
    target = cfg.gate.target_ratio
    probe = build_backbone(cfg.model, gated_conv_factory(lambda s: gate_for(s, cfg.gate)))
    infos = conv_inventory(probe, cfg.data.image_size)
    dense = sum(i.dense_macs for i in infos)
    gated = sum(i.dense_macs for i in infos if i.gate is not None)
    predictor = sum(i.spec.in_channels * i.spec.out_channels for i in infos if i.gate is not None)
    keep = (target * dense - (dense - gated) - predictor) / gated
    if keep <= 0:
        raise UserError(f"gate.target_reduction/target_density: FBS cannot reach ratio {target:.3f} (ungated convs alone cost more)")
    keep = min(1.0, keep)
    if cfg.gate.accounting != "full" or keep >= 1.0:
        return keep
    return full_keep_ratio(probe, cfg.data.image_size, target)


@torch.no_grad()
def _full_ratio(probe: nn.Module, infos: list, image_size: int, keep_ratio: float) -> float:
    """Network MAC ratio of the full accounting (every overhead and the input-side credit) at
    ``keep_ratio``: one forward of a blank image (``probe`` in eval mode). The count does not
    depend on the image, since every layer keeps exactly k channels per image and the credit only
    counts them."""
    layers = gated_layers(probe)
    for _, layer in layers:
        layer.keep = max(1, math.ceil(round(keep_ratio * layer.out_channels, 9)))
    probe(torch.zeros(1, 3, image_size, image_size))
    records = {name: layer.record for name, layer in layers}
    effective = sum(float(records[i.name].macs["total"].sum()) if i.name in records else i.dense_macs for i in infos)
    effective -= sum(float(c.sum()) for c in input_credit(probe, records).values())
    return effective / sum(i.dense_macs for i in infos)


def full_keep_ratio(probe: nn.Module, image_size: int, target: float, iterations: int = 14) -> float:
    """The keep ratio whose full-convention network ratio is closest to ``target``, by bisection on
    (0, 1] (the ratio grows with the keep ratio). It keeps more channels than the output-only
    formula for the same target, since the channels a layer drops are input channels its consumer
    skips. ``probe``: the FBS backbone, BatchNorms not yet moved."""
    adopt_output_norms(probe)
    infos = conv_inventory(probe, image_size)
    probe.eval()
    low, high = 0.0, 1.0
    best = min(((abs(_full_ratio(probe, infos, image_size, r) - target), r) for r in (low, high)))
    for _ in range(iterations):  # 2^-14 of the keep ratio: finer than one channel of any layer up to 16k
        middle = 0.5 * (low + high)
        ratio = _full_ratio(probe, infos, image_size, middle)
        best = min(best, (abs(ratio - target), middle))
        low, high = (low, middle) if ratio > target else (middle, high)
    return best[1]


class FBS(PredictorMethod):
    """Top-k channel selection by a linear saliency predictor on the pooled input."""

    name = "fbs"
    Settings = FBSSettings
    target_by_shift = False
    gate_macs_per_output = 1  # scaling of each computed output by its saliency π

    @classmethod
    def validate(cls, spec: ConvSpec, gate: GateSpec) -> None:
        keep = gate.settings.keep_ratio
        if not is_real(keep) or not 0.0 < keep <= 1.0:
            raise UserError(f"gate.keep_ratio: must be in (0, 1], got {keep!r} (of layer {spec.name})")

    @classmethod
    def decision_block(cls, gate: GateSpec, out_hw: tuple[int, int]) -> tuple[int, int, int]:
        return 1, out_hw[0], out_hw[1]  # one decision per output channel, over the whole map

    @classmethod
    def fixed_gate_macs(cls, spec: ConvSpec, gate: GateSpec, in_hw: tuple[int, int]) -> int:
        """C_out (ReLU) + C_out ceil(log2 C_out) (top-k selection compares)."""
        c_out = spec.out_channels
        return c_out + c_out * math.ceil(math.log2(c_out)) if c_out > 1 else 1

    @classmethod
    def predictor_macs(cls, spec: ConvSpec, gate: GateSpec, in_hw: tuple[int, int]) -> int:
        """C_in H_in W_in (global average pool adds) + C_in C_out (linear)."""
        return spec.in_channels * in_hw[0] * in_hw[1] + spec.in_channels * spec.out_channels

    @classmethod
    def backbone_settings(cls, cfg) -> dict:
        return {"keep_ratio": fbs_keep_ratio(cfg)}

    @classmethod
    def begin_step(cls, controller, epoch: float) -> None:
        """FBS's top-k follows the same schedule as every other method's target: k falls linearly
        from C_out to its final value over the ramp (the network ratio is affine in k), instead
        of jumping from all channels to the final k when the warm-up ends. Under ``gate.control:
        published`` k is the paper's fixed k-winner-take-all from the first gated step (no ramp)."""
        if controller.gate.control == "published":
            for backbone in (controller.backbone, controller.target_backbone):
                for _, layer in gated_layers(backbone) if backbone is not None else []:
                    layer.keep_now = None
            return
        final = controller.gate.target_ratio if controller.gate.target_ratio is not None else 1.0
        progress = (1.0 - controller.target_at(epoch)) / (1.0 - final) if final < 1.0 else 1.0
        for backbone in (controller.backbone, controller.target_backbone):
            for _, layer in gated_layers(backbone) if backbone is not None else []:
                layer.keep_now = layer.keep + round((layer.out_channels - layer.keep) * (1.0 - progress))

    @classmethod
    def regulariser(cls, controller, views, cost, target):
        """L1 on the channel saliencies (the keep ratio was set from the target up front)."""
        rho = controller.gate.reg_weight
        return 1e-3 * rho * sum(r.saliency_mean for view in views for r in view.values()) / (len(views) * len(controller.layers))


class FBSConv(PredictorGatedConv):
    """Feature boosting and suppression. ``saliency``: the C_in -> C_out linear predictor."""

    impl = FBS

    def __init__(self, spec: ConvSpec, gate: GateSpec):
        super().__init__(spec, gate)
        self.saliency = nn.Linear(spec.in_channels, spec.out_channels)
        nn.init.ones_(self.saliency.bias)
        # k = ceil(keep_ratio C_out), rounded first so that e.g. 0.4 * 5 = 2.0000000000000004 gives 2
        self.keep = max(1, math.ceil(round(gate.settings.keep_ratio * spec.out_channels, 9)))
        # k during the target ramp (set every step by the GateController); None: the final k
        self.keep_now: int | None = None
        self.norm: nn.Module | None = None  # the BatchNorm after this conv, see adopt_output_norms

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_hw = (x.shape[-2], x.shape[-1])
        pooled = spatial_mean(x)
        pooled = pooled / input_scale(pooled)
        pi = F.relu(self.saliency(pooled.to(self.saliency.weight.dtype))).float()  # N x C_out
        k = self.keep if self.keep_now is None else self.keep_now
        if self.gating and k < self.out_channels:
            keep = torch.zeros_like(pi).scatter_(1, pi.detach().topk(k, dim=1).indices, 1.0)
        else:
            keep = torch.ones_like(pi)
        y = self._conv(x, self.weight)
        if self.norm is not None:
            y = self.norm(y)
        y = y * (pi * keep).to(y.dtype)[:, :, None, None]
        density = keep.mean(dim=1)
        self._record(
            mask=keep[:, :, None, None],
            soft_density=density.mean(),
            soft_density_per_sample=density,
            saliency_mean=pi.mean(),
            in_hw=in_hw,
            out_hw=(y.shape[-2], y.shape[-1]),
            gated=self.gating,
            extras={"saliency": pi.detach()},
        )
        return y


FBS.layer = FBSConv
