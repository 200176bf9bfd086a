"""CDG's cross-branch saliency term (``gate.cross_branch``): the two contrastive views of an image
show overlapping parts of it, and where they overlap the gates should agree.

``overlap_consistency``: each view's decision map of a gated layer (the straight-through gates g,
N x D x H_d x W_d, ``GateRecord.decisions``) is mapped into the other view's coordinates through
the crop boxes and flips the augmentation drew (``cdg.data.view_geometry``); the term is

    C = mean over layers of ½ (C_a→b + C_b→a),
    C_a→b = Σ_{cells of view a that view b shows} mean_D (g_a − warp_b(g_b))² / (number of such cells)

with warp_b(g_b) the bilinear sample of view b's map at the cell's position in view b. Cells
that only one view shows add nothing (the gates are free there), so the term pulls the two
branches' saliency together on shared content and leaves each branch its own budget where its
crop sees something the other does not. Both views receive the gradient (through the
straight-through surrogate, into the thresholds and the base weights).
"""
from __future__ import annotations

import torch

from cdg.data.view_geometry import ViewGeometry, cross_view_points, sample_at

MODES = ("none", "overlap_consistency")


def one_way(g_a: torch.Tensor, g_b: torch.Tensor, a: ViewGeometry, b: ViewGeometry) -> torch.Tensor:
    """C_a→b: mean squared gate disagreement over the cells of view a that view b shows (0 if none)."""
    points, inside = cross_view_points(a, b, g_a.shape[-2], g_a.shape[-1])
    warped = sample_at(g_b.float(), points)
    sq = (g_a.float() - warped).pow(2).mean(dim=1)  # N x H_d x W_d
    weight = inside.to(sq.dtype)
    return (sq * weight).sum() / weight.sum().clamp(min=1.0)


def layer_consistency(g_a: torch.Tensor, g_b: torch.Tensor, a: ViewGeometry, b: ViewGeometry) -> torch.Tensor:
    """½ (C_a→b + C_b→a) for one layer's two decision maps."""
    return 0.5 * (one_way(g_a, g_b, a, b) + one_way(g_b, g_a, b, a))


def overlap_consistency(views: list[dict], geometry: tuple[ViewGeometry, ViewGeometry]) -> torch.Tensor | None:
    """C over the layers both views recorded with a decision map; None when there are none."""
    first, second = views
    terms = [layer_consistency(first[name].decisions, second[name].decisions, *geometry)
             for name in first
             if name in second and first[name].decisions is not None and second[name].decisions is not None]
    return torch.stack(terms).mean() if terms else None


def cross_branch_loss(gate, views: list[dict], geometry) -> tuple[torch.Tensor | None, dict[str, float]]:
    """The weighted term of ``gate.cross_branch`` (``gate``: the run's ``GateConfig``) and its log."""
    if gate.cross_branch == "none" or len(views) != 2:
        return None, {}
    if geometry is None:
        raise RuntimeError("gate.cross_branch needs the views' crop geometry (GateController.begin_step(epoch, geometry))")
    term = overlap_consistency(views, geometry)
    if term is None:
        return None, {}
    return gate.cross_branch_weight * term, {"gate_consistency": float(term.detach())}
