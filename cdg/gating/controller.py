"""Training-side control of dynamic sparsity: how sparse, when, in which branch.

``GateController`` owns everything the training loop needs beyond the SSL loss:

* the **layer inventory** of the backbone (``cdg.tracing.inventory``: every conv's input/output
  shape and dense MACs, from one dummy forward), so the network-level MAC ratio
  r = effective / dense can be computed from the gate records;
* **per-view records**: forward hooks on the online backbone collect each gated layer's
  record for each backbone call (view 1, view 2) of a step;
* the **target schedule**: dense warm-up (all gates on), then a linear ramp of the target
  ratio from 1 to the requested one;
* the **regulariser** of the gate method (``GateMethod.regulariser``, in its
  ``cdg/gating/methods/<name>.py``; see docs/algorithm.md) and the controller state it uses
  (``multiplier``, ``threshold_target``, checkpointed);
* the optional **cross-branch saliency alignment** ``align_weight · mean (d_v1 − d_v2)²`` on
  per-image layer densities, and the cross-branch term of ``gate.cross_branch``
  (``cdg.gating.cross_branch``: gate agreement where the two crops overlap, from the views'
  geometry handed to ``begin_step``);
* **integral target control** for every threshold/bias method (``GateMethod.integral_control``:
  cdg, cgnet, dgnet under ``gate.control: shared``): after each optimiser step all gates shift by
  η (r_hard − t), so training runs at the scheduled ratio;
* the **branch policy**: gates in both contrastive branches (default) or only one (the
  second view of a shared encoder, or the online encoder of MoCo/BYOL, runs dense);
* hardware-aware **prices** of each layer's gated MACs (``gate.hw_aware``, ``cdg.tracing.hw_prices``).

Calibration after training is ``cdg.gating.calibration``.
"""
from __future__ import annotations

import torch
from torch import nn

from cdg import distributed
from hwsim.trace.errors import UserError
from cdg.gating import registry
from cdg.gating.base import gated_layers, set_gating
from cdg.gating.cross_branch import cross_branch_loss
from cdg.gating.price_masks import masks_at_density
from cdg.tracing.hw_prices import layer_weights, target_density
from cdg.tracing.input_credit import input_credit
from cdg.tracing.inventory import ConvInfo, conv_inventory


def check_feasible(cfg, infos: list[ConvInfo]) -> None:
    """Fail before training if the base path alone already costs more than the target allows
    (``cfg``: a ``cdg.config.Config``; only for methods that meet the target by shifting gates)."""
    target = cfg.gate.target_ratio
    if target is None or not registry.method(cfg.gate.method).target_by_shift:
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
    """Regulariser, schedule, branch policy and target control for one run (see the module docstring).

    ``cfg`` is the run's ``cdg.config.Config`` (not imported here: ``cdg.config`` reads the gate
    registry, so ``cdg.gating`` stays below it)."""

    def __init__(self, cfg, model: nn.Module, steps_per_epoch: int, price_images: torch.Tensor | None = None):
        """``price_images``: training images (eval transform) to fit ``gate.hw_aware_prices: real`` on."""
        self.cfg = cfg
        self.gate = cfg.gate
        self.method = registry.method(cfg.gate.method)
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
        self.epoch = 0.0
        self.records: list[dict] = [{}, {}]
        self.geometry = None  # the two views' ViewGeometry of this step (gate.cross_branch)
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
            masks = None
            if getattr(self.gate, "hw_aware_prices", "iid") == "real":
                if price_images is None:
                    raise ValueError("gate.hw_aware_prices=real needs price_images (training images)")
                masks = masks_at_density(self.backbone, price_images,
                                         target_density(self.infos, self.gate.target_ratio))
            self.hw_layers = layer_weights(self.infos, self.gate.hw_aware, self.gate.target_ratio, masks)
            self.price.update({name: row["weight"] for name, row in self.hw_layers.items()})

    # ---- schedule
    def target_at(self, epoch: float) -> float:
        """Requested ratio at a (fractional) epoch: 1 during warm-up, then a linear ramp to the target."""
        final = self.gate.target_ratio if self.gate.target_ratio is not None else 1.0
        t = (epoch - self.gate.warmup_epochs) / max(self.gate.ramp_epochs, 1e-9)
        return 1.0 - (1.0 - final) * min(max(t, 0.0), 1.0) if epoch >= self.gate.warmup_epochs else 1.0

    def begin_step(self, epoch: float, geometry=None) -> None:
        """Start a step at ``epoch``; ``geometry``: the views' (``ViewGeometry``, ``ViewGeometry``),
        which ``gate.cross_branch`` needs (``TwoViewAugment.last_geometry``)."""
        self.geometry = geometry
        self.gates_on = epoch >= self.gate.warmup_epochs
        self.epoch = epoch
        self.view = 0
        self.records = [{}, {}]
        self.collecting = True
        set_gating(self.backbone, self.gates_on)
        self.method.begin_step(self, epoch)
        if self.target_backbone is not None:
            set_gating(self.target_backbone, self.gates_on and self.gate.branches == "both")

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

    def _credit(self, records: dict) -> float:
        """Under ``gate.accounting: full``, the input-side credit of one view (MACs skipped on
        structurally zero inputs, ``cdg.tracing.input_credit``) as a fraction of the dense MACs,
        batch mean; 0 under ``output``. It depends on the hard masks only, so it enters the soft
        ratio as a constant of the step: the gradient stays that of the output-side densities."""
        if self.gate.accounting != "full":
            return 0.0
        credit = input_credit(self.backbone, records)
        return sum(float(c.double().mean()) for c in credit.values()) / self.dense_total

    def loss(self, epoch: float) -> tuple[torch.Tensor | None, dict[str, float]]:
        """Sparsity (and alignment) loss of the step just run, and its logs; None while dense."""
        views = [r for r in self.records if r]
        if not views or not self.gates_on or self.gate.method == "none":
            return None, {}
        target = self.target_at(epoch)
        credits = [self._credit(r) for r in views]
        ratios = [self._soft_ratio(r) - c if c else self._soft_ratio(r) for r, c in zip(views, credits)]
        ratio = sum(ratios) / len(ratios)
        cost = ratio
        if self.hw_layers:   # the penalty prices MACs by hardware; the feedback below stays on FLOPs
            cost = sum(self._soft_ratio(r, priced=True) - c for r, c in zip(views, credits)) / len(views)
        loss = self.method.regulariser(self, views, cost, target)
        logs = {"gate_ratio": float(ratio.detach()), "gate_target": target}
        if self.gate.align_weight > 0 and len(views) == 2:
            gaps = [(views[0][n].soft_density_per_sample - views[1][n].soft_density_per_sample).pow(2).mean()
                    for n in views[0] if n in views[1]]
            align = torch.stack(gaps).mean()
            loss = loss + self.gate.align_weight * align
            logs["gate_align"] = float(align.detach())
        cross, cross_logs = cross_branch_loss(self.gate, views, self.geometry)
        if cross is not None:
            loss = loss + cross
            logs.update(cross_logs)
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
        if error is None or not self.method.integral_control(self.gate):
            return
        step = self.gate.controller_lr * error
        shift_gates(self.backbone, step, self.price if self.hw_layers else None)
        self.method.integrate(self, step)

    @property
    def calibratable(self) -> bool:
        """Whether ``cdg.gating.calibration.calibrate`` can meet the target by shifting the gates."""
        return self.method.integral_control(self.gate)

    def state_dict(self) -> dict:
        return {"multiplier": self.multiplier, "threshold_target": self.threshold_target}

    def load_state_dict(self, state: dict) -> None:
        self.multiplier = float(state["multiplier"])
        self.threshold_target = float(state["threshold_target"])

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []


# --------------------------------------------------------------------------- gate shift


def shift_gates(backbone: nn.Module, delta: float, scale: dict[str, float] | None = None) -> None:
    """Move every gate toward 'off' by ``delta`` (thresholds up / predictor biases down);
    ``scale`` multiplies the shift per layer name (hardware-aware control)."""
    base_delta = delta
    with torch.no_grad():
        for name, layer in gated_layers(backbone):
            delta = base_delta * (scale.get(name, 1.0) if scale else 1.0)
            layer.shift_gate(delta)
