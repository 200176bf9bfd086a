"""Training-side control of dynamic sparsity: which convs are gated, how sparse, in which branch.

``GateController`` owns everything the training loop needs beyond the SSL loss:

* the **layer inventory** of the backbone (every conv's input/output shape and dense MACs,
  from one dummy forward), so the network-level MAC ratio r = effective / dense can be
  computed from the gate records;
* **per-view records**: forward hooks on the online backbone collect each gated layer's
  record for each backbone call (view 1, view 2) of a step;
* the **target schedule**: dense warm-up (all gates on), then a linear ramp of the target
  ratio from 1 to the requested one;
* the **regulariser**, per gate method (see docs/algorithm.md):
  - cdg: augmented Lagrangian on the soft network ratio of *both* views,
    μ (r − t) + ρ/2 (r − t)², with dual ascent μ ← μ + η (r_hard − t) after every step;
  - cgnet: its own threshold regulariser ρ Σ_layers mean_c (Δ_c − T)², the threshold target T
    moved by the same feedback (T ← T + η (r_hard − t)) so that it reaches the requested ratio;
  - dgnet: its FLOPs-ratio loss ρ (r − t)²;
  - fbs: L1 on its channel saliencies (its keep ratio is set from the target up front);
* the optional **cross-branch saliency alignment** ``align_weight · mean (d_v1 − d_v2)²`` on
  per-image layer densities;
* **integral target control** for every threshold/bias method (cdg, cgnet, dgnet): after each
  optimiser step all gates shift by η (r_hard − t), so training runs at the scheduled ratio;
* the **branch policy**: gates in both contrastive branches (default) or only one (the
  second view of a shared encoder, or the online encoder of MoCo/BYOL, runs dense);
* **calibration**: after training, one global threshold shift found by bisection so the
  measured ratio on held-out training images meets the target.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import torch
from torch import nn

from cdg.run import distributed
from cdg.config import Config, GateConfig
from hwsim.trace.errors import UserError
from cdg.gating.accounting import dense_conv_macs, fixed_gate_macs, predictor_macs
from cdg.gating.layers import GatedConv, gated_conv_factory, gated_layers, set_gating
from cdg.gating.predictors import adopt_output_norms
from cdg.gating.spec import GateSpec, base_channels
from cdg.models.resnet import ConvSpec, ResNet, build_backbone


# --------------------------------------------------------------------------- which convs, which gate


def gate_for(spec: ConvSpec, cfg: GateConfig, keep_ratio: float = 0.5) -> GateSpec | None:
    """The gate of conv ``spec`` under ``cfg`` (None: stays dense)."""
    if cfg.method == "none" or spec.role == "stem":
        return None
    if cfg.layers == "3x3":
        if spec.role != "conv" or spec.kernel_size != 3:
            return None
    elif not any(fnmatch.fnmatchcase(spec.name, pattern) for pattern in cfg.layers):
        return None
    stage = cfg.stages.get(spec.name.split(".")[0])
    groups = stage.groups if stage and stage.groups is not None else cfg.groups
    block = stage.channel_block if stage and stage.channel_block is not None else cfg.channel_block
    spatial = stage.spatial_block if stage and stage.spatial_block is not None else cfg.spatial_block
    if cfg.method != "cdg":
        block = 1
    elif block == "all":
        block = spec.out_channels
    if cfg.method in ("cgnet", "fbs"):
        spatial = 1
    return GateSpec(
        method=cfg.method,
        groups=groups,
        channel_block=block,
        spatial_block=spatial,
        sharpness=cfg.sharpness,
        keep_ratio=keep_ratio,
    )


@dataclass(frozen=True)
class ConvInfo:
    """One conv of the backbone, as seen on a dummy image of the training size."""

    name: str
    spec: ConvSpec
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    gate: GateSpec | None

    @property
    def dense_macs(self) -> int:
        return dense_conv_macs(self.spec, self.in_shape[1], self.in_shape[2])

    @property
    def overhead_macs(self) -> int:
        """Per-image MACs of the gate and predictor themselves (mask-independent; FBS's per-output
        saliency scaling, which depends on the mask, is left out)."""
        if self.gate is None:
            return 0
        in_hw = (self.in_shape[1], self.in_shape[2])
        return fixed_gate_macs(self.spec, self.gate, in_hw) + predictor_macs(self.spec, self.gate, in_hw)

    @property
    def gated_macs(self) -> int:
        """MACs that the gate can remove (conditional part, or the whole conv without a base path)."""
        if self.gate is None:
            return 0
        return self.dense_macs * (self.spec.in_channels - base_channels(self.spec, self.gate)) // self.spec.in_channels


@torch.no_grad()
def conv_inventory(backbone: nn.Module, image_size: int) -> list[ConvInfo]:
    """Shapes of every conv from one forward of a dummy image (eval mode, state restored)."""
    shapes: dict[str, tuple] = {}
    hooks = []
    for name, module in backbone.named_modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(
                lambda m, inp, out, name=name: shapes.__setitem__(name, (tuple(inp[0].shape[1:]), tuple(out.shape[1:])))
            ))
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    try:
        backbone(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        backbone.train(was_training)
        for hook in hooks:
            hook.remove()
    infos = []
    for name, module in backbone.named_modules():
        if isinstance(module, nn.Conv2d):
            spec = module.spec if isinstance(module, GatedConv) else ConvSpec(
                name, module.in_channels, module.out_channels, module.kernel_size[0], module.stride[0],
                module.padding[0], "conv",
            )
            gate = module.gate if isinstance(module, GatedConv) else None
            infos.append(ConvInfo(name, spec, *shapes[name], gate))
    return infos


def fbs_keep_ratio(cfg: Config) -> float:
    """FBS keep ratio that meets the target network ratio (predictor MACs included)."""
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
    return min(1.0, keep)


def build_gated_backbone(cfg: Config) -> ResNet:
    """The backbone with the convs ``cfg.gate`` selects replaced by gated ones."""
    if cfg.gate.method == "none":
        return build_backbone(cfg.model)
    keep = fbs_keep_ratio(cfg) if cfg.gate.method == "fbs" else 0.5
    backbone = build_backbone(cfg.model, gated_conv_factory(lambda spec: gate_for(spec, cfg.gate, keep)))
    if cfg.gate.method in ("fbs", "dgnet"):
        adopt_output_norms(backbone)  # their gates act on the BatchNorm output (predictors.py)
    return backbone


def check_feasible(cfg: Config, infos: list[ConvInfo]) -> None:
    """Fail before training if the base path alone already costs more than the target allows."""
    target = cfg.gate.target_ratio
    if target is None or cfg.gate.method in ("fbs",):
        return
    if not any(i.gate is not None for i in infos):
        raise UserError(f"gate.layers={cfg.gate.layers!r} selects no convolution to gate")
    dense = sum(i.dense_macs for i in infos)
    floor = sum(i.dense_macs - i.gated_macs for i in infos) / dense
    if target <= floor:
        raise UserError(
            f"gate.target: ratio {target:.3f} (reduction {1 / target:.2f}x) is below what the always-computed "
            f"base path costs ({floor:.3f}, at most {1 / floor:.2f}x); raise gate.groups or lower the target"
        )


# --------------------------------------------------------------------------- controller


class GateController:
    """Regulariser, schedule, branch policy and calibration for one run (see the module docstring)."""

    def __init__(self, cfg: Config, model: nn.Module, steps_per_epoch: int):
        self.cfg = cfg
        self.gate = cfg.gate
        self.backbone: nn.Module = model.backbone
        self.target_backbone: nn.Module | None = getattr(model, "target_backbone", None)
        self.steps_per_epoch = steps_per_epoch
        self.layers = gated_layers(self.backbone)
        self.infos = conv_inventory(self.backbone, cfg.data.image_size)
        check_feasible(cfg, self.infos)
        self.dense_total = sum(i.dense_macs for i in self.infos)
        by_name = {i.name: i for i in self.infos}
        self.layer_gated_macs = {name: by_name[name].gated_macs for name, _ in self.layers}
        # The gates' and predictors' own work depends only on shapes: computed once, not per step.
        self.layer_overhead_macs = {name: by_name[name].overhead_macs for name, _ in self.layers}
        # Lagrange multiplier (cdg) / threshold target (cgnet): the controller's state, checkpointed.
        self.multiplier = 0.0
        self.threshold_target = 0.0
        self.view = 0
        self.records: list[dict] = [{}, {}]
        self._hooks = [self.backbone.register_forward_pre_hook(self._before_view),
                       self.backbone.register_forward_hook(self._after_view)]
        for name, layer in self.layers:
            self._hooks.append(layer.register_forward_hook(
                lambda m, inp, out, name=name: self._keep(name, m.record)))
        self.collecting = False
        self.gates_on = True
        self._error: float | None = None
        # hardware-aware pricing of each layer's gated MACs (1 everywhere without gate.hw_aware)
        self.hw_layers: dict[str, dict] = {}
        self.price = {name: 1.0 for name, _ in self.layers}
        if self.gate.hw_aware and self.gate.target_ratio is not None:
            from cdg.gating.hw_aware import layer_weights
            self.hw_layers = layer_weights(self.infos, self.gate.hw_aware, self.gate.target_ratio)
            self.price.update({name: row["weight"] for name, row in self.hw_layers.items()})

    # ---- schedule
    def target_at(self, epoch: float) -> float:
        """Requested ratio at a (fractional) epoch: 1 during warm-up, then a linear ramp to the target."""
        final = self.gate.target_ratio if self.gate.target_ratio is not None else 1.0
        t = (epoch - self.gate.warmup_epochs) / max(self.gate.ramp_epochs, 1e-9)
        return 1.0 - (1.0 - final) * min(max(t, 0.0), 1.0) if epoch >= self.gate.warmup_epochs else 1.0

    def begin_step(self, epoch: float) -> None:
        self.gates_on = epoch >= self.gate.warmup_epochs
        self.view = 0
        self.records = [{}, {}]
        self.collecting = True
        set_gating(self.backbone, self.gates_on)
        if self.gate.method == "fbs":
            self._ramp_fbs_keep(epoch)
        if self.target_backbone is not None:
            set_gating(self.target_backbone, self.gates_on and self.gate.branches == "both")

    def _ramp_fbs_keep(self, epoch: float) -> None:
        """FBS's top-k follows the same schedule as every other method's target: k falls linearly
        from C_out to its final value over the ramp (the network ratio is affine in k), instead
        of jumping from all channels to the final k when the warm-up ends."""
        final = self.gate.target_ratio if self.gate.target_ratio is not None else 1.0
        progress = (1.0 - self.target_at(epoch)) / (1.0 - final) if final < 1.0 else 1.0
        for backbone in (self.backbone, self.target_backbone):
            for _, layer in gated_layers(backbone) if backbone is not None else []:
                layer.keep_now = layer.keep + round((layer.out_channels - layer.keep) * (1.0 - progress))

    def end_step(self) -> None:
        self.collecting = False
        self.records = [{}, {}]

    def _before_view(self, module, args) -> None:
        if self.collecting and self.gate.branches == "one" and self.target_backbone is None and self.view == 1:
            set_gating(self.backbone, False)  # shared encoder: the second view runs dense

    def _after_view(self, module, args, output) -> None:
        if self.collecting:
            if self.gate.branches == "one" and self.target_backbone is None:
                set_gating(self.backbone, self.gates_on)
            self.view += 1

    def _keep(self, name: str, record) -> None:
        if self.collecting and self.view < 2:
            self.records[self.view][name] = record

    # ---- regulariser
    def _soft_ratio(self, records: dict, priced: bool = False) -> torch.Tensor:
        """Differentiable network ratio effective/dense of one view (its forward value is the hard
        ratio). ``priced``: each layer's gated MACs weighted by its hardware price (gate.hw_aware);
        the prices average to 1 over the gated MACs, so a uniform density gives the same value."""
        variable = sum(records[name].soft_density * self.layer_gated_macs[name] * (self.price[name] if priced else 1.0)
                       for name in records)
        fixed = self.dense_total - sum(self.layer_gated_macs[name] for name in records)
        overhead = sum(self.layer_overhead_macs[name] for name in records)
        return (variable + fixed + overhead) / self.dense_total

    def loss(self, epoch: float) -> tuple[torch.Tensor | None, dict[str, float]]:
        """Sparsity (and alignment) loss of the step just run, and its logs; None while dense."""
        views = [r for r in self.records if r]
        if not views or not self.gates_on or self.gate.method == "none":
            return None, {}
        target = self.target_at(epoch)
        ratios = [self._soft_ratio(r) for r in views]
        ratio = sum(ratios) / len(ratios)
        cost = ratio
        if self.hw_layers:   # the penalty prices MACs by hardware; the feedback below stays on FLOPs
            cost = sum(self._soft_ratio(r, priced=True) for r in views) / len(views)
        rho = self.gate.reg_weight
        method = self.gate.method
        if method == "cdg":
            loss = self.multiplier * (cost - target) + 0.5 * rho * (cost - target) ** 2
        elif method == "cgnet":
            loss = rho * sum(layer.threshold_penalty(self.threshold_target) / layer.threshold.numel()
                             for _, layer in self.layers)
        elif method == "dgnet":
            loss = rho * (cost - target) ** 2
        else:  # fbs: L1 on the channel saliencies
            loss = 1e-3 * rho * sum(r.saliency_mean for view in views for r in view.values()) / (len(views) * len(self.layers))
        logs = {"gate_ratio": float(ratio.detach()), "gate_target": target}
        if self.gate.align_weight > 0 and len(views) == 2:
            gaps = [(views[0][n].soft_density_per_sample - views[1][n].soft_density_per_sample).pow(2).mean()
                    for n in views[0] if n in views[1]]
            align = torch.stack(gaps).mean()
            loss = loss + self.gate.align_weight * align
            logs["gate_align"] = float(align.detach())
        # Feedback on the hard ratio of this step, averaged over DDP ranks so every rank keeps
        # the same controller state; applied in ``after_step`` (after the optimiser step).
        hard = distributed.all_reduce_mean(ratio.detach().float()).item()
        logs["gate_ratio"] = hard
        self._error = hard - target
        return loss, logs

    def after_step(self) -> None:
        """Integral target control: move every gate toward off (or on) by gain x (ratio - target).

        Gradients alone move the thresholds too slowly to track a schedule (the contrastive loss
        pulls them toward dense); this feedback keeps the hard ratio at the scheduled target
        during training, so the network learns at the sparsity it will run at. The Lagrange
        multiplier (cdg) and the threshold target T (cgnet) integrate the same error.
        """
        error, self._error = self._error, None
        if error is None or self.gate.method == "fbs":
            return
        step = self.gate.controller_lr * error
        shift_gates(self.backbone, step, self.price if self.hw_layers else None)
        if self.gate.method == "cdg":
            self.multiplier += step
        elif self.gate.method == "cgnet":
            self.threshold_target += step

    def state_dict(self) -> dict:
        return {"multiplier": self.multiplier, "threshold_target": self.threshold_target}

    def load_state_dict(self, state: dict) -> None:
        self.multiplier = float(state["multiplier"])
        self.threshold_target = float(state["threshold_target"])

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []


# --------------------------------------------------------------------------- calibration


def shift_gates(backbone: nn.Module, delta: float, scale: dict[str, float] | None = None) -> None:
    """Move every gate toward 'off' by ``delta`` (thresholds up / predictor biases down);
    ``scale`` multiplies the shift per layer name (hardware-aware control)."""
    base_delta = delta
    with torch.no_grad():
        for name, layer in gated_layers(backbone):
            delta = base_delta * (scale.get(name, 1.0) if scale else 1.0)
            if hasattr(layer, "threshold"):
                layer.threshold.add_(delta)
            if hasattr(layer, "spatial_bias"):
                layer.spatial_bias.sub_(delta)
                layer.channel_fc2.bias.sub_(delta)


@torch.no_grad()
def measured_layer_macs(backbone: nn.Module, images: torch.Tensor, infos: list[ConvInfo], batch: int = 256) -> dict[str, float]:
    """Effective MACs of every conv of ``infos`` summed over ``images`` (eval mode, hard gates);
    ungated convs count their dense MACs."""
    gated = dict(gated_layers(backbone))
    effective = dict.fromkeys((info.name for info in infos), 0.0)
    was_training = backbone.training
    backbone.eval()
    try:
        for start in range(0, images.shape[0], batch):
            chunk = images[start : start + batch]
            backbone(chunk)
            for info in infos:
                if info.name in gated and gated[info.name].record is not None:
                    effective[info.name] += float(gated[info.name].record.macs["total"].double().sum())
                else:
                    effective[info.name] += info.dense_macs * chunk.shape[0]
    finally:
        backbone.train(was_training)
    return effective


def measured_ratio(backbone: nn.Module, images: torch.Tensor, infos: list[ConvInfo], batch: int = 256) -> float:
    """Network effective/dense MAC ratio on ``images`` (eval mode, hard gates)."""
    dense_total = sum(i.dense_macs for i in infos)
    return sum(measured_layer_macs(backbone, images, infos, batch).values()) / (dense_total * images.shape[0])


@dataclass(frozen=True)
class Calibration:
    """Result of ``calibrate``: the gate shift, the measured ratio before and after, and the layers
    held at a different shift (``held``: name -> shift) because their gates jump together."""

    shift: float
    ratio_before: float
    ratio_after: float
    held: dict[str, float]


def calibrate(backbone: nn.Module, images: torch.Tensor, infos: list[ConvInfo], target: float,
              tolerance: float = 0.005, iterations: int = 30) -> Calibration:
    """Shift the gates so the measured ratio on ``images`` meets ``target`` (within ``tolerance``, relative).

    First one global shift, by bisection: the ratio falls monotonically as the shift grows, because
    every gate is a threshold on a score the shift does not change. The ratio can jump across the
    target, though, when many decisions share one score (a predictor whose output barely depends on
    the image, a layer with a 1x1 map): then the layers that jump most across the final bracket are
    held at its dense end and the others are bisected again from there, until the target is met,
    no layer explains the jump, or every layer is held. Whatever happens, the gates are left at the
    closest ratio seen.
    """
    names = [name for name, _ in gated_layers(backbone)]
    dense_total = sum(i.dense_macs for i in infos) * images.shape[0]
    applied = dict.fromkeys(names, 0.0)

    def close(ratio: float) -> bool:
        return abs(ratio - target) <= tolerance * target

    def move_to(shifts: dict[str, float]) -> None:
        shift_gates(backbone, 1.0, {name: shifts[name] - applied[name] for name in names})
        applied.update(shifts)

    def measure() -> tuple[float, dict[str, float]]:
        macs = measured_layer_macs(backbone, images, infos)
        return sum(macs.values()) / dense_total, macs

    before, macs = measure()
    best = (abs(before - target), dict(applied), before)
    held: dict[str, float] = {}
    start, ratio = 0.0, before
    while not close(best[2]):
        free = [name for name in names if name not in held]
        if not free:
            break

        def at(shift: float) -> tuple[float, dict[str, float]]:
            nonlocal best
            move_to({**applied, **dict.fromkeys(free, shift)})
            r, m = measure()
            best = min(best, (abs(r - target), dict(applied), r), key=lambda item: item[0])
            return r, m

        # bracket [dense side: ratio above target, sparse side: below] in the free layers' shift
        sides = {ratio > target: (start, macs)}
        direction = 1.0 if ratio > target else -1.0
        for reach in (4.0, 16.0, 64.0, 256.0):
            shift = start + direction * reach
            r, m = at(shift)
            sides[r > target] = (shift, m)
            if close(r) or len(sides) == 2:
                break
        if close(best[2]) or len(sides) < 2:  # met, or even the widest shift cannot reach the target
            break
        for _ in range(iterations):
            (dense_shift, _), (sparse_shift, _) = sides[True], sides[False]
            middle = 0.5 * (dense_shift + sparse_shift)
            if middle in (dense_shift, sparse_shift):  # bracket at float resolution
                break
            r, m = at(middle)
            if close(r):
                break
            sides[r > target] = (middle, m)
        if close(best[2]):
            break
        (dense_shift, dense_macs), (_, sparse_macs) = sides[True], sides[False]
        jumps = {name: dense_macs.get(name, 0.0) - sparse_macs.get(name, 0.0) for name in free}
        largest = max(jumps.values())
        if largest <= 0:  # no layer explains the jump
            break
        # Hold the jumping layers on the dense side: at the sparse side a layer whose decisions
        # share one score loses most of its work at once, while the others thin out gracefully.
        held.update({name: dense_shift for name, jump in jumps.items() if jump >= 0.5 * largest})
        move_to({**applied, **dict.fromkeys(free, dense_shift)})
        start, macs = dense_shift, dense_macs
        ratio = sum(macs.values()) / dense_total
    _, shifts, after = best
    move_to(shifts)
    free_shifts = [shifts[name] for name in names if name not in held] or [0.0]
    base = free_shifts[0]
    return Calibration(base, before, after, {name: s for name, s in shifts.items() if s != base})
