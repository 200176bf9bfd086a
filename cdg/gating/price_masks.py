"""The model's own gate masks at a given density, for hardware prices fitted on real masks
(``gate.hw_aware_prices: real``, ``cdg.tracing.hw_prices.layer_weights(masks=...)``).

iid masks at the target density ``d*`` price a layer as if its decisions were scattered at
random; the masks a network produces cluster (neighbouring pixels and channels agree, background
goes off together), which a coarse-grained accelerator turns into more saved cycles per gated-off
MAC. ``masks_at_density`` runs a batch of training images through the current gates with each
dynamically gated layer shifted so that its own conditional density is ``d*`` (the density the
iid prices assume), so the two price sources differ only in where the gated-off work lies.

Layers are fitted in module order, each by bisection on its gate shift (the density falls
monotonically as the shift grows: every gate is a threshold on a score the shift does not
change), with the earlier layers already at their fitted shift, so each layer sees the input the
network computes at that density. The layer's input is taken once (a forward that stops there) and
the bisection runs the layer alone. The gates' state is
restored exactly afterwards (a copy of every gated layer's tensors), so fitting leaves the model
as it was. A layer whose decisions jump together (few decisions per image) keeps the closest
density it can reach.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cdg.gating.base import gated_layers

BRACKET = (4.0, 16.0, 64.0, 256.0)
ITERATIONS = 24
TOLERANCE = 0.005  # absolute density


class _Stop(Exception):
    """Raised once the layer being fitted has its input: the rest of the forward is not needed."""


def _layer_input(backbone: nn.Module, layer: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """What ``layer`` receives when ``backbone`` runs ``images`` (the forward stops there)."""
    seen = []

    def keep_and_stop(module, inputs) -> None:
        seen.append(inputs[0])
        raise _Stop

    hook = layer.register_forward_pre_hook(keep_and_stop)
    try:
        backbone(images)
    except _Stop:
        pass
    finally:
        hook.remove()
    return seen[0]


def _density(record) -> float:
    return float(record.full_resolution().float().mean())


@torch.no_grad()
def masks_at_density(backbone: nn.Module, images: torch.Tensor, density: float) -> dict[str, np.ndarray]:
    """Full-resolution masks (bool, n x C_out x H_out x W_out) of every dynamically gated layer of
    ``backbone`` on ``images`` (eval mode) with that layer's gates shifted to conditional density
    ``density``; layers with ``gate.static_off`` are left out. The backbone is left unchanged."""
    layers = [(name, layer) for name, layer in gated_layers(backbone) if not layer.gate.static_off]
    saved = {name: {k: v.detach().clone() for k, v in layer.state_dict().items()} for name, layer in layers}
    was_training = backbone.training
    backbone.eval()
    masks: dict[str, np.ndarray] = {}
    try:
        for name, layer in layers:
            x = _layer_input(backbone, layer, images)
            applied = 0.0

            def run(shift: float) -> float:
                nonlocal applied
                layer.shift_gate(shift - applied)
                applied = shift
                layer(x)
                return _density(layer.record)

            best = (abs(run(0.0) - density), 0.0)
            sides = {True: 0.0} if _density(layer.record) > density else {False: 0.0}
            direction = 1.0 if True in sides else -1.0
            for reach in BRACKET:
                d = run(direction * reach)
                best = min(best, (abs(d - density), direction * reach))
                sides[d > density] = direction * reach
                if len(sides) == 2 or best[0] <= TOLERANCE:
                    break
            if len(sides) == 2 and best[0] > TOLERANCE:
                for _ in range(ITERATIONS):
                    middle = 0.5 * (sides[True] + sides[False])
                    d = run(middle)
                    best = min(best, (abs(d - density), middle))
                    if best[0] <= TOLERANCE:
                        break
                    sides[d > density] = middle
            run(best[1])
            masks[name] = layer.record.full_resolution().cpu().numpy()
    finally:
        for name, layer in layers:
            layer.load_state_dict(saved[name])
            layer.record = None
        backbone.train(was_training)
    return masks
