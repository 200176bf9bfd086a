"""SimCLR (Chen et al., ICML 2020): two views, one encoder, NT-Xent over the global batch."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cdg.methods.base import MethodOutput, SSLMethod, logs_to_floats, mlp
from cdg.methods.losses import nt_xent_logits


class SimCLR(SSLMethod):
    """Backbone + projector (Linear-BN-ReLU-Linear); loss = NT-Xent averaged over all 2N anchors.

    Under DDP every rank's anchors see the embeddings of all ranks as negatives
    (gathered with gradient), so the effective number of negatives is
    2 x global batch - 2, as in the paper.
    """

    name = "simclr"

    def __init__(self, backbone: nn.Module, proj_hidden_dim: int, proj_dim: int, temperature: float):
        super().__init__()
        self.backbone = backbone
        self.projector = mlp(backbone.feature_dim, proj_hidden_dim, proj_dim)
        self.temperature = float(temperature)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> MethodOutput:
        z1 = self.projector(self.backbone(view1))
        z2 = self.projector(self.backbone(view2))
        logits, targets = nt_xent_logits(z1, z2, self.temperature)
        loss = F.cross_entropy(logits, targets)
        with torch.no_grad():
            pos_sim = F.cosine_similarity(z1.float(), z2.float(), dim=1).mean()
            acc = (logits.argmax(dim=1) == targets).float().mean()
        return MethodOutput(loss, logs_to_floats({"pos_sim": pos_sim, "acc": acc}))
