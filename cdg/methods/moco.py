"""MoCo v2 (Chen, Fan, Girshick, He, 2020): momentum key encoder and a queue of negative keys.

Differences from the reference implementation, on purpose:

- **Symmetric loss.** Each view is both query and key:
  ``loss = (InfoNCE(q1, k2) + InfoNCE(q2, k1)) / 2``, and both views' keys are
  enqueued (2 x global batch keys per step). The original used one direction;
  the symmetric form uses every forward pass and is a common reimplementation
  choice.
- **No shuffle-BN.** The original shuffled the key batch across GPUs so that
  BN statistics could not leak which query matches which key. Multi-GPU runs
  here use SyncBatchNorm instead (statistics over the global batch, so a
  per-GPU leak is diluted); on one device the leak through BN is tolerated,
  as in many single-GPU reimplementations.

The queue (K x proj_dim unit rows) and its write pointer are registered
buffers, so checkpoints restore them; keys from all ranks are gathered before
they are enqueued, so every rank holds the same queue. The queue need not be a
multiple of the global batch: writes wrap around the end.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cdg import distributed
from cdg.methods.base import MethodOutput, SSLMethod, ema_update, frozen_copy, logs_to_floats, mlp
from cdg.methods.losses import queue_logits


class MoCo(SSLMethod):
    """Query encoder = backbone + MLP head (Linear-ReLU-Linear, no BN, as in MoCo v2); key encoder = its EMA."""

    name = "moco"

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int,
        proj_dim: int,
        temperature: float,
        queue_size: int,
        momentum: float,
    ):
        super().__init__()
        if queue_size < 1:
            raise ValueError("queue_size must be positive")
        self.backbone = backbone
        self.projector = mlp(backbone.feature_dim, proj_hidden_dim, proj_dim, batch_norm=False)
        self.target_backbone = frozen_copy(self.backbone)
        self.target_projector = frozen_copy(self.projector)
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _keys(self, view: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.target_projector(self.target_backbone(view)).float(), dim=1)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` (B x D) at the pointer, wrapping around; only the last K survive if B > K."""
        size = self.queue.shape[0]
        batch = keys.shape[0]
        start = max(0, batch - size)
        ptr = self.queue_ptr
        idx = (ptr + torch.arange(start, batch, device=ptr.device)) % size
        self.queue.index_copy_(0, idx.to(self.queue.device), keys[start:].to(self.queue.dtype))
        self.queue_ptr.copy_((ptr + batch) % size)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> MethodOutput:
        q1 = self.projector(self.backbone(view1))
        q2 = self.projector(self.backbone(view2))
        k1 = self._keys(view1)
        k2 = self._keys(view2)
        # Snapshot the queue: it is overwritten in place below, after the logits are built.
        queue = self.queue.clone()
        logits12 = queue_logits(q1, k2, queue, self.temperature)
        logits21 = queue_logits(q2, k1, queue, self.temperature)
        logits = torch.cat([logits12, logits21], dim=0)
        targets = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        loss = F.cross_entropy(logits, targets)
        with torch.no_grad():
            pos_sim = logits[:, 0].mean() * self.temperature
            neg_sim = logits[:, 1:].mean() * self.temperature
            acc = (logits.argmax(dim=1) == 0).float().mean()
        if self.training:
            self.enqueue(distributed.gather_no_grad(torch.cat([k1, k2], dim=0)))
        return MethodOutput(loss, logs_to_floats({"pos_sim": pos_sim, "neg_sim": neg_sim, "queue_acc": acc}))

    @torch.no_grad()
    def momentum_update(self, progress: float) -> None:
        """Constant-momentum EMA of the key encoder (``progress`` is unused)."""
        ema_update(self.target_backbone, self.backbone, self.momentum)
        ema_update(self.target_projector, self.projector, self.momentum)
