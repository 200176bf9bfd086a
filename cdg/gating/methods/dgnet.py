"""Dynamic dual gating (DGNet; Li et al., ICCV 2021, after its released code): the gate method and ``DGNetConv``.

One spatial and one channel mask **per residual block**, predicted from the block's input by the
block's first gated conv (the *leader*, conv1 of a basic block); the block's later gated convs
(*followers*, conv2) reuse the leader's spatial mask. ``DGNet.adopt`` links them. With
b = ``spatial_block`` and x the leader's input (N x C_in x H_in x W_in)::

    spatial: z_s = conv3x3(adaptive_avgpool_{H_d x W_d}(x) / σ_x, V) + c   C_in -> 1, padding 1, on the
             decision grid H_d x W_d = ceil(H_out / b) x ceil(W_out / b); σ_x = rms_c(avgpool(x))
    channel: z_c = B2 · ReLU(BN(B1 · avgpool(x))) + b2                      bottleneck h = max(1, C_in // r), BatchNorm
    g = 1[z + ε > 0],  ε = log u − log(1 − u), u ~ U(0, 1) in training only   Gumbel(-sigmoid) noise; eval: 1[z > 0]
        backward: d/dz sigmoid((z + ε) / τ), τ = ``tau`` (2/3)
    leader:   Y = (g_c ⊗ g_s) ⊙ BN(conv(x, W))        its C_out channels are the block's gated width
    follower: Y = g_s ⊙ BN(conv(x, W))                 every output channel, at the leader's on pixels

The masks live on the modules: the leader's ``record.extras["channel"]`` (N x C_out) and
``["spatial"]`` (N x H_d x W_d), the follower's ``record.extras["spatial"]`` (the same tensor), and
each record's ``mask`` (the product, at the decision grid). The leader's zeroed channels are
structurally zero inputs of the follower, so the full accounting credits them there
(``cdg.tracing.input_credit``): conv1's channel savings are counted in conv2. The predictors'
MACs are booked at the leader; a follower has none.

Loss: the FLOPs-ratio loss ρ (r − t)² plus the bounding loss of the released code on each
block's spatial and channel densities d (batch means), around √t each::

    γ Σ_{d ∈ {d_s, d_c}} mean_blocks [ relu(p √t − d)² + relu(d − (1 − p + p √t))² ],  p = exp(−a · e)

e the epochs since the warm-up, a = ``gate.bound_decay``, γ = ``gate.bound_weight``: the bounds
start at √t and relax toward [0, 1]. Under ``gate.control: shared`` the controller's feedback and
the calibration also shift the leaders' predictor output biases (down = toward off).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hwsim.trace.errors import UserError
from cdg.gating.accounting import conv_out_hw, decision_grid
from cdg.gating.base import ThresholdSettings, validate_threshold_settings
from cdg.gating.ops import block_weights, expand_decisions, gate_dtype, match_layout, spatial_fraction, straight_through_gate
from cdg.gating.predictor import PredictorGatedConv, PredictorMethod, adopt_output_norms, input_scale, spatial_mean
from cdg.gating.spec import GateSpec, check_positive_int, is_real
from cdg.models.resnet import ConvSpec


@dataclass(frozen=True)
class DGNetSettings(ThresholdSettings):
    reduction: int = 4
    """Bottleneck width of the channel predictor is max(1, C_in // reduction)."""
    tau: float = 2.0 / 3.0
    """Temperature of the Gumbel-sigmoid gates (the surrogate is sigmoid(z / tau))."""
    follower: bool = False
    """Set by ``DGNet.adopt``: the layer reuses its block leader's spatial mask and has no predictor."""


def dgnet_hidden(spec: ConvSpec, gate: GateSpec) -> int:
    return max(1, spec.in_channels // gate.settings.reduction)


def logistic_noise(like: torch.Tensor) -> torch.Tensor:
    """log u − log(1 − u), u ~ U(0, 1): the difference of two Gumbel samples (DGNet's gate noise)."""
    u = torch.rand_like(like).clamp_(1e-6, 1.0 - 1e-6)
    return u.log() - (-u).log1p()


def gumbel_gate(z: torch.Tensor, tau: float, training: bool) -> torch.Tensor:
    """Hard 1[z + ε > 0] (ε logistic noise in training, none in eval), straight-through gradient of
    sigmoid((z + ε) / τ)."""
    z = z.to(gate_dtype(z))
    if training:
        z = z + logistic_noise(z)
    return straight_through_gate(z, 0.0, 1.0 / tau)


def bound_loss(density: torch.Tensor, target: float, p: float) -> torch.Tensor:
    """mean over blocks of relu(p √t − d)² + relu(d − (1 − p + p √t))² (the released code's bound)."""
    root = math.sqrt(target)
    return (F.relu(p * root - density) ** 2 + F.relu(density - (1.0 - p + p * root)) ** 2).mean()


class DGNet(PredictorMethod):
    """Spatial and channel gates per residual block, predicted from the block input."""

    name = "dgnet"
    Settings = DGNetSettings
    spatial_blocks = True

    @classmethod
    def validate(cls, spec: ConvSpec, gate: GateSpec) -> None:
        check_positive_int("reduction", gate.settings.reduction)
        validate_threshold_settings(gate.settings)
        if not is_real(gate.settings.tau) or gate.settings.tau <= 0:
            raise UserError(f"gate.tau: must be a finite number > 0, got {gate.settings.tau!r}")

    @classmethod
    def decision_block(cls, gate: GateSpec, out_hw: tuple[int, int]) -> tuple[int, int, int]:
        return 1, gate.spatial_block, gate.spatial_block

    @classmethod
    def fixed_gate_macs(cls, spec: ConvSpec, gate: GateSpec, in_hw: tuple[int, int]) -> int:
        """Leader: C_out + H_d W_d compares; follower: 0 (it reuses the leader's decisions)."""
        if gate.settings.follower:
            return 0
        _, h_d, w_d = decision_grid(spec, gate, conv_out_hw(spec, *in_hw))
        return spec.out_channels + h_d * w_d

    @classmethod
    def predictor_macs(cls, spec: ConvSpec, gate: GateSpec, in_hw: tuple[int, int]) -> int:
        """Leader: spatial C_in H_in W_in (pool adds) + 9 C_in H_d W_d (3x3 conv) + channel C_in H_in W_in
        (global pool adds) + C_in h + h C_out (two linears, h = max(1, C_in // reduction)); follower: 0."""
        if gate.settings.follower:
            return 0
        c_in, c_out = spec.in_channels, spec.out_channels
        pool = c_in * in_hw[0] * in_hw[1]
        _, h_d, w_d = decision_grid(spec, gate, conv_out_hw(spec, *in_hw))
        hidden = dgnet_hidden(spec, gate)
        return pool + 9 * c_in * h_d * w_d + pool + c_in * hidden + hidden * c_out

    @classmethod
    def backbone_settings(cls, cfg) -> dict:
        return {"tau": cfg.gate.tau}

    @classmethod
    def adopt(cls, backbone: nn.Module) -> None:
        adopt_output_norms(backbone)
        link_blocks(backbone)

    @classmethod
    def regulariser(cls, controller, views, cost, target):
        """ρ (r − t)² + the bounding loss on every block's spatial and channel density (per view, averaged)."""
        gate = controller.gate
        p = math.exp(-gate.bound_decay * max(0.0, controller.epoch - gate.warmup_epochs))
        bound = 0.0
        for view in views:
            blocks = [r.parts for r in view.values() if r.parts]
            for key in ("spatial", "channel"):
                if blocks:
                    bound = bound + bound_loss(torch.stack([b[key] for b in blocks]), target, p) / len(views)
        return gate.reg_weight * (cost - target) ** 2 + gate.bound_weight * bound


def link_blocks(backbone: nn.Module) -> int:
    """In every residual block (a module with children conv1, conv2, ...), make the first DGNet conv
    the leader and the later ones its followers (no predictor of their own), as long as the convs
    between keep the leader's output size (stride 1, 'same' padding); a conv that changes it starts
    a new leader (a bottleneck's strided conv2). Returns how many followers."""
    followers = 0
    for module in backbone.modules():
        if not isinstance(getattr(module, "conv2", None), nn.Conv2d):
            continue
        leader = None
        for conv in (getattr(module, f"conv{i}", None) for i in (1, 2, 3)):
            if not isinstance(conv, nn.Conv2d):
                continue
            keeps_size = conv.stride == (1, 1) and all(2 * p + 1 == k for p, k in zip(conv.padding, conv.kernel_size))
            if isinstance(conv, DGNetConv) and leader is not None and keeps_size:
                conv.follow(leader)
                followers += 1
            elif isinstance(conv, DGNetConv):
                leader = conv
            elif not keeps_size:
                leader = None
    return followers


class DGNetConv(PredictorGatedConv):
    """Dynamic dual gating conv. Leader: spatial predictor (``spatial_weight`` 1 x C_in x 3 x 3,
    ``spatial_bias``) and channel predictor (``channel_fc1``, ``channel_bn``, ``channel_fc2``);
    follower: ``leader`` (the block's leader, not a submodule) and no predictor."""

    impl = DGNet

    def __init__(self, spec: ConvSpec, gate: GateSpec):
        super().__init__(spec, gate)
        c_in, c_out = spec.in_channels, spec.out_channels
        bound = 1.0 / math.sqrt(9 * c_in)
        self.spatial_weight = nn.Parameter(torch.empty(1, c_in, 3, 3).uniform_(-bound, bound))
        self.spatial_bias = nn.Parameter(torch.tensor(-float(gate.settings.init_threshold)))
        hidden = dgnet_hidden(spec, gate)
        self.channel_fc1 = nn.Linear(c_in, hidden, bias=False)
        self.channel_bn = nn.BatchNorm1d(hidden)
        self.channel_fc2 = nn.Linear(hidden, c_out)
        nn.init.constant_(self.channel_fc2.bias, -float(gate.settings.init_threshold))
        self.norm: nn.Module | None = None  # the BatchNorm after this conv, see adopt_output_norms
        self.shared_spatial: torch.Tensor | None = None  # the leader's last spatial gate, N x 1 x H_d x W_d

    def follow(self, leader: "DGNetConv") -> None:
        """Become a follower of ``leader``: drop the own predictors, reuse its spatial mask."""
        for name in ("spatial_weight", "spatial_bias", "channel_fc1", "channel_bn", "channel_fc2"):
            delattr(self, name)
        object.__setattr__(self, "leader", leader)  # a reference, not a submodule (no duplicate parameters)
        self.gate = dataclasses.replace(self.gate, settings=dataclasses.replace(self.gate.settings, follower=True))

    @property
    def is_follower(self) -> bool:
        return self.gate.settings.follower

    def __getstate__(self):
        state = super().__getstate__()
        state["shared_spatial"] = None
        return state

    def shift_gate(self, delta: float) -> None:
        if not self.is_follower:
            self.spatial_bias.sub_(delta)
            self.channel_fc2.bias.sub_(delta)

    def logits(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The leader's predictor outputs (z_s N x 1 x H_d x W_d, z_c N x C_out): a gate is on
        where its logit is > 0 in eval (also what the sparse executor decides from)."""
        pooled = spatial_mean(x)
        scale = input_scale(pooled)[:, :, None, None].to(x.dtype)
        pooled_grid = x if grid == tuple(x.shape[-2:]) else F.adaptive_avg_pool2d(x, grid)
        z_s = F.conv2d(pooled_grid / scale, self.spatial_weight.to(x.dtype), self.spatial_bias.view(1).to(x.dtype), padding=1)
        hidden = F.relu(self.channel_bn(self.channel_fc1(pooled.to(self.channel_fc1.weight.dtype))))
        return z_s, self.channel_fc2(hidden)

    def _predict(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Straight-through (g_s N x 1 x H_d x W_d, g_c N x C_out) of the leader."""
        tau = self.gate.settings.tau
        z_s, z_c = self.logits(x, grid)
        return gumbel_gate(z_s, tau, self.training), gumbel_gate(z_c, tau, self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_hw = (x.shape[-2], x.shape[-1])
        out_hw = self.out_hw(*in_hw)
        b = self.gate.spatial_block
        grid = (-(-out_hw[0] // b), -(-out_hw[1] // b))
        if self.is_follower:
            g_s = self.leader.shared_spatial
            if g_s is None or tuple(g_s.shape[-2:]) != grid or g_s.shape[0] != x.shape[0]:
                raise ValueError(f"DGNet follower {self.spec.name}: its leader {self.leader.spec.name} gave no "
                                 f"spatial mask of grid {grid} for this batch (the leader must run first)")
            g_c = torch.ones(x.shape[0], self.out_channels, dtype=g_s.dtype, device=g_s.device)
            parts = {}
        else:
            g_s, g_c = self._predict(x, grid)
            self.shared_spatial = g_s
            spatial = spatial_fraction(g_s, block_weights(out_hw, b, b, g_s.device))
            parts = {"spatial": spatial.mean(), "channel": g_c.mean()}
        g = g_c[:, :, None, None] * g_s  # N x C_out x H_d x W_d
        density = g_c.mean(dim=1) * spatial_fraction(g_s, block_weights(out_hw, b, b, g.device))
        if self.gating:
            y = self._conv(x, self.weight)
            y = self.norm(y) if self.norm is not None else y
            y = y * match_layout(expand_decisions(g.to(y.dtype), 1, b, b, out_hw), y)
            mask = g.detach()
        else:
            y = self._conv(x, self.weight, self._zero_bias(density.sum(), x.dtype))
            y = self.norm(y) if self.norm is not None else y
            mask = torch.ones_like(g)
        self._record(
            mask=mask, soft_density=density.mean(), soft_density_per_sample=density, saliency_mean=None,
            in_hw=in_hw, out_hw=out_hw, gated=self.gating, parts=parts,
            extras={"channel": g_c.detach(), "spatial": g_s.detach()[:, 0]},
        )
        return y


DGNet.layer = DGNetConv
