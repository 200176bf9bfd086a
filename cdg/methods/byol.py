"""BYOL (Grill et al., NeurIPS 2020): online network + predictor regress an EMA target network."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cdg.methods.base import MethodOutput, SSLMethod, cosine_momentum, ema_update, frozen_copy, logs_to_floats, mlp
from cdg.methods.losses import byol_loss


class BYOL(SSLMethod):
    """Online: backbone -> projector -> predictor; target: EMA copy of backbone + projector.

    Both heads are Linear-BN-ReLU-Linear. The loss is the paper's symmetrised
    sum ``byol_loss(p1, z2_target) + byol_loss(p2, z1_target)`` (range [0, 8]).
    The EMA momentum follows ``cosine_momentum(momentum, momentum_final, progress)``.
    """

    name = "byol"

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int,
        proj_dim: int,
        pred_hidden_dim: int,
        momentum: float,
        momentum_final: float,
    ):
        super().__init__()
        self.backbone = backbone
        self.projector = mlp(backbone.feature_dim, proj_hidden_dim, proj_dim)
        self.predictor = mlp(proj_dim, pred_hidden_dim, proj_dim)
        self.target_backbone = frozen_copy(self.backbone)
        self.target_projector = frozen_copy(self.projector)
        self.momentum = float(momentum)
        self.momentum_final = float(momentum_final)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> MethodOutput:
        z1 = self.projector(self.backbone(view1))
        z2 = self.projector(self.backbone(view2))
        p1 = self.predictor(z1)
        p2 = self.predictor(z2)
        with torch.no_grad():
            t1 = self.target_projector(self.target_backbone(view1))
            t2 = self.target_projector(self.target_backbone(view2))
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        with torch.no_grad():
            pos_sim = 0.5 * (
                F.cosine_similarity(p1.float(), t2.float(), dim=1).mean()
                + F.cosine_similarity(p2.float(), t1.float(), dim=1).mean()
            )
            z_std = F.normalize(z1.float(), dim=1).std(dim=0).mean() * z1.shape[1] ** 0.5
        return MethodOutput(loss, logs_to_floats({"pos_sim": pos_sim, "z_std": z_std}))

    def current_momentum(self, progress: float) -> float:
        return cosine_momentum(self.momentum, self.momentum_final, progress)

    @torch.no_grad()
    def momentum_update(self, progress: float) -> None:
        tau = self.current_momentum(progress)
        ema_update(self.target_backbone, self.backbone, tau)
        ema_update(self.target_projector, self.projector, tau)
