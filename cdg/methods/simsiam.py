"""SimSiam (Chen & He, CVPR 2021): a shared encoder, a predictor, and a stop-gradient; no target network."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cdg.methods.base import MethodOutput, SSLMethod, logs_to_floats, mlp
from cdg.methods.losses import simsiam_loss


class SimSiam(SSLMethod):
    """Projector: 3 Linear layers, each followed by BN (the output BN without affine), per the paper;
    predictor: Linear-BN-ReLU-Linear bottleneck. Loss: ``(D(p1, sg(z2)) + D(p2, sg(z1))) / 2``, range [-1, 1].
    """

    name = "simsiam"

    def __init__(self, backbone: nn.Module, proj_hidden_dim: int, proj_dim: int, pred_hidden_dim: int):
        super().__init__()
        self.backbone = backbone
        self.projector = mlp(backbone.feature_dim, proj_hidden_dim, proj_dim, layers=3, out_norm=True)
        self.predictor = mlp(proj_dim, pred_hidden_dim, proj_dim)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> MethodOutput:
        z1 = self.projector(self.backbone(view1))
        z2 = self.projector(self.backbone(view2))
        p1 = self.predictor(z1)
        p2 = self.predictor(z2)
        loss = 0.5 * (simsiam_loss(p1, z2) + simsiam_loss(p2, z1))
        with torch.no_grad():
            pos_sim = F.cosine_similarity(z1.float(), z2.float(), dim=1).mean()
            # Std of the unit-normalised projections times sqrt(dim): ~1 when healthy, ~0 when collapsed.
            z_std = F.normalize(z1.float(), dim=1).std(dim=0).mean() * z1.shape[1] ** 0.5
        return MethodOutput(loss, logs_to_floats({"pos_sim": pos_sim, "z_std": z_std}))
