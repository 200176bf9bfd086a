"""Layer level of Contrastive Dual Gating (CDG) and the dynamic-pruning baselines (CGNet, FBS, DGNet).

Build a gated backbone without copying it::

    from cdg.gating import GateSpec, default_selection, gated_conv_factory
    from cdg.models.resnet import ResNet

    net = ResNet("resnet18", conv_factory=gated_conv_factory(default_selection(GateSpec("cdg", groups=4))))

Each gated layer leaves a ``GateRecord`` (mask, differentiable density, thresholds, per-image
MACs) in ``layer.record`` after every forward; ``collect_records(net)`` gathers them.
"""
from cdg.gating.accounting import (
    conv_out_hw,
    count_effective_macs,
    decision_block,
    decision_grid,
    dense_conv_macs,
    effective_macs,
)
from cdg.gating.layers import (
    CDGConv,
    CGNetConv,
    GatedConv,
    GateRecord,
    build_gated_conv,
    cdg_saliency,
    collect_records,
    default_selection,
    full_resolution_mask,
    gated_conv_factory,
    gated_layers,
    set_gating,
    straight_through_gate,
)
from cdg.gating.predictors import DGNetConv, FBSConv
from cdg.gating.spec import METHODS, GateSpec, base_channels, validate_gate

__all__ = [
    "METHODS",
    "CDGConv",
    "CGNetConv",
    "DGNetConv",
    "FBSConv",
    "GateRecord",
    "GateSpec",
    "GatedConv",
    "base_channels",
    "build_gated_conv",
    "cdg_saliency",
    "collect_records",
    "conv_out_hw",
    "count_effective_macs",
    "decision_block",
    "decision_grid",
    "default_selection",
    "dense_conv_macs",
    "effective_macs",
    "full_resolution_mask",
    "gated_conv_factory",
    "gated_layers",
    "set_gating",
    "straight_through_gate",
    "validate_gate",
]
