"""Channel gating (CGNet; Hua et al., NeurIPS 2019): the gate method and its layer ``CGNetConv``.

A base/conditional split of the input channels, one decision per output element::

    s = BN(Y_base)                     non-affine BatchNorm: batch statistics in training,
                                       running statistics in eval
    g = 1[s > Δ_c]                     Δ: learnable per output channel (shape C_out), straight-through
    Y = Y_base + g ⊙ Y_cond            Y_cond: the partial sum of the other input channels

Channel grouping (``grouping: shuffle``, as published): the C_in input and C_out output channels
are cut into G groups; output group i takes input group i as its base path and the other G − 1
groups as its conditional path, so every input channel is a base channel of some outputs (the
paper's reason: no weights favoured by an always-on path). The groups are formed after a
ShuffleNet channel shuffle of the input (``channel_shuffle``), so each output group of one layer
feeds the base paths of every group of the next layer. The shuffle is expressed as the consumer's
grouping of its input channels: the module's output channel order is unchanged, so BatchNorms,
residual sums and traces are untouched. ``grouping: first`` is the earlier design (base = the
first ceil(C_in / G) input channels for every output).

Its regulariser is its own threshold penalty ρ Σ_layers mean_c (Δ_c − T)² (``layer.threshold_penalty``).
Under ``gate.control: shared`` the threshold target T is moved by the controller's feedback
(T ← T + η (r_hard − t)) so that it reaches the requested ratio; under ``published`` T is fixed
(``gate.target_threshold``, by default the normal quantile that leaves the conditional density
the target needs, ``target_threshold``) and nothing else pulls the thresholds.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import torch
import torch.nn.functional as F

from hwsim.trace.errors import UserError
from cdg.gating.accounting import conv_out_hw
from cdg.gating.base import ThresholdSettings, validate_threshold_settings
from cdg.gating.ops import block_weights, spatial_fraction, straight_through_gate
from cdg.gating.selection import gate_for, gated_conv_factory
from cdg.gating.spec import GateSpec, is_real
from cdg.gating.split import SplitGatedConv, SplitMethod
from cdg.models.resnet import ConvSpec, build_backbone
from cdg.tracing.inventory import conv_inventory


@dataclass(frozen=True)
class CGNetSettings(ThresholdSettings):
    bn_momentum: float = 0.1
    """Momentum of the running statistics of its non-affine BatchNorm on the base partial sum."""
    grouping: str = "shuffle"
    """"shuffle": channel grouping with channel shuffle (published); "first": base = first C_b inputs."""
    target_threshold: float | None = None
    """Fixed threshold target T of the penalty (``gate.control: published``); None: the controller's T."""


def channel_shuffle(channels: int, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle as an index: ``x[:, perm]`` is x viewed as (G, C/G), transposed
    and flattened, i.e. position a G + g holds channel g C/G + a."""
    per = channels // groups
    return torch.arange(channels).view(groups, per).t().reshape(-1)


def inverse_permutation(perm: torch.Tensor) -> torch.Tensor:
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel())
    return inverse


def base_mask(c_in: int, c_out: int, groups: int) -> torch.Tensor:
    """C_out x C_in bool: input channel c is on output channel o's base path (the same group after
    the shuffle of the input)."""
    in_group = inverse_permutation(channel_shuffle(c_in, groups)) // (c_in // groups)
    out_group = torch.arange(c_out) // (c_out // groups)
    return out_group[:, None] == in_group[None, :]


def target_threshold(cfg) -> float:
    """T whose gates keep the conditional density the target needs, if the normalised base partial
    sums are standard normal: T = Φ⁻¹(1 − d), d = (t · dense − ungated − base − gate overhead) / conditional
    MACs, of a probe backbone (``cfg``: a ``cdg.config.Config``)."""
    if cfg.gate.target_threshold is not None:
        return float(cfg.gate.target_threshold)
    probe = build_backbone(cfg.model, gated_conv_factory(lambda s: gate_for(s, cfg.gate, {"grouping": cfg.gate.grouping})))
    infos = conv_inventory(probe, cfg.data.image_size)
    dense = sum(i.dense_macs for i in infos)
    conditional = sum(i.gated_macs for i in infos)
    fixed = sum(i.dense_macs - i.gated_macs + i.overhead_macs for i in infos)
    density = (cfg.gate.target_ratio * dense - fixed) / max(conditional, 1)
    if not 0.0 < density < 1.0:
        raise UserError(f"gate.target_reduction/target_density: CGNet's fixed threshold cannot reach ratio "
                        f"{cfg.gate.target_ratio:.3f} (conditional density {density:.3f} is outside (0, 1))")
    return NormalDist().inv_cdf(1.0 - density)


class CGNet(SplitMethod):
    """Channel gating: threshold per output channel on the batch-normalised base partial sum."""

    name = "cgnet"
    Settings = CGNetSettings

    @classmethod
    def validate(cls, spec: ConvSpec, gate: GateSpec) -> None:
        validate_threshold_settings(gate.settings)
        momentum = gate.settings.bn_momentum
        if not is_real(momentum) or not 0.0 < momentum <= 1.0:
            raise UserError(f"gate.bn_momentum: must be in (0, 1], got {momentum!r}")
        if gate.settings.grouping not in ("shuffle", "first"):
            raise UserError(f"gate.grouping: must be 'shuffle' or 'first', got {gate.settings.grouping!r}")
        t = gate.settings.target_threshold
        if t is not None and not is_real(t):
            raise UserError(f"gate.target_threshold: must be a finite number, got {t!r}")
        super().validate(spec, gate)
        if gate.settings.grouping == "shuffle" and (spec.in_channels % gate.groups or spec.out_channels % gate.groups):
            raise UserError(
                f"gate.groups={gate.groups} must divide C_in={spec.in_channels} and C_out={spec.out_channels} "
                f"of layer {spec.name} for gate.grouping=shuffle (or set gate.grouping=first)"
            )

    @classmethod
    def split_gate_macs(cls, spec: ConvSpec, gate: GateSpec, in_hw: tuple[int, int]) -> int:
        """2 per output element: normalise with the BatchNorm statistics, compare."""
        out_hw = conv_out_hw(spec, *in_hw)
        return 2 * spec.out_channels * out_hw[0] * out_hw[1]

    @classmethod
    def backbone_settings(cls, cfg) -> dict:
        published = cfg.gate.control == "published" and cfg.gate.target_ratio is not None
        return {"grouping": cfg.gate.grouping, "target_threshold": target_threshold(cfg) if published else None}

    @classmethod
    def regulariser(cls, controller, views, cost, target):
        """ρ Σ_layers mean_c (Δ_c − T)², T the fixed target threshold (published) or the controller's."""
        rho = controller.gate.reg_weight

        def aim(layer) -> float:
            fixed = layer.gate.settings.target_threshold
            return controller.threshold_target if fixed is None else fixed

        return rho * sum(layer.threshold_penalty(aim(layer)) / layer.threshold.numel() for _, layer in controller.layers)

    @classmethod
    def integrate(cls, controller, step: float) -> None:
        controller.threshold_target += step


class CGNetConv(SplitGatedConv):
    """Channel gating conv (Hua et al. 2019). ``threshold``: Δ, shape C_out; ``running_mean/var``: its
    BN statistics; ``base_weight_mask`` (grouping "shuffle"): C_out x C_in x 1 x 1, 1 on the base path."""

    impl = CGNet

    def __init__(self, spec: ConvSpec, gate: GateSpec):
        super().__init__(spec, gate, spec.out_channels)
        # A non-affine BatchNorm held as plain buffers (not an nn.BatchNorm2d submodule, which the
        # backbone's initialisation and SyncBatchNorm conversion would treat as one of its own).
        self.register_buffer("running_mean", torch.zeros(spec.out_channels))
        self.register_buffer("running_var", torch.ones(spec.out_channels))
        self.grouped = gate.settings.grouping == "shuffle" and gate.groups > 1
        if self.grouped:
            mask = base_mask(spec.in_channels, spec.out_channels, gate.groups)
            self.register_buffer("base_weight_mask", mask[:, :, None, None].float(), persistent=False)
            self.register_buffer("shuffle", channel_shuffle(spec.in_channels, gate.groups), persistent=False)

    def normalise(self, y_base: torch.Tensor) -> torch.Tensor:
        """BN(Y_base) without affine: batch statistics in training (updating the running ones), running in eval."""
        return F.batch_norm(
            y_base.to(self.running_mean.dtype), self.running_mean, self.running_var, None, None,
            self.training, self.gate.settings.bn_momentum, 1e-5,
        )

    def _decide(self, y_base: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
        return straight_through_gate(self.normalise(y_base), self.threshold.view(1, -1, 1, 1),
                                     self.gate.settings.sharpness)

    def grouped_partial_sums(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Y_base, Y_cond) under channel grouping: the base path one grouped conv on the shuffled
        input (C_in / G channels per output), the conditional path the conv with the base taps zeroed."""
        groups = self.gate.groups
        per_in, per_out = self.in_channels // groups, self.out_channels // groups
        columns = self.shuffle.view(groups, per_in).repeat_interleave(per_out, dim=0)  # C_out x C_in/G
        w_base = self.weight.gather(1, columns[:, :, None, None].expand(-1, -1, *self.weight.shape[2:]))
        y_base = F.conv2d(x.index_select(1, self.shuffle), w_base, None, self.stride, self.padding, groups=groups)
        y_cond = self._conv(x, self.weight * (1.0 - self.base_weight_mask).to(self.weight.dtype))
        return y_base, y_cond

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.grouped:
            return super().forward(x)
        y_base, y_cond = self.grouped_partial_sums(x)
        out_hw = (y_base.shape[-2], y_base.shape[-1])
        block = self.impl.decision_block(self.gate, out_hw)
        if self.gating:
            y, g, density = self._gate_and_sum(y_base, y_cond, block)
            mask = g.detach()
        else:  # all on: the decisions still feed soft_density, a zero bias keeps Δ in the graph
            g = self._decide(y_base, block)
            density = spatial_fraction(g, block_weights(out_hw, block[1], block[2], g.device))
            y = y_base + y_cond + self._zero_bias(density.sum(), y_base.dtype).view(1, -1, 1, 1)
            mask = torch.ones_like(g)
        self._record(mask=mask, soft_density=density.mean(), soft_density_per_sample=density, saliency_mean=None,
                     in_hw=(x.shape[-2], x.shape[-1]), out_hw=out_hw, gated=self.gating)
        return y


CGNet.layer = CGNetConv
