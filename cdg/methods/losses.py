"""Loss functions of the SSL methods, as pure functions of embeddings.

Every function disables autocast and casts its inputs to float32 before
normalising, so that similarities and the softmax are computed in full
precision even when the encoders run under bf16/fp16 autocast (autocast would
otherwise run the similarity matmuls in low precision). Vectors are
L2-normalised inside each function; callers pass raw projector/predictor
outputs.

Only ``nt_xent`` / ``nt_xent_logits`` talk to other processes (through
``cdg.distributed``, an identity in one process); everything else is local.
The methods symmetrise the losses over the two views.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from cdg import distributed


def _float32(func):
    """Run ``func`` with autocast off on the device of its first tensor argument."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        device = next(a.device for a in args if isinstance(a, torch.Tensor))
        with torch.autocast(device_type=device.type, enabled=False):
            return func(*args, **kwargs)

    return wrapper


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=1)


@_float32
def nt_xent_logits_local(
    z1: torch.Tensor,
    z2: torch.Tensor,
    z1_all: torch.Tensor,
    z2_all: torch.Tensor,
    offset: int,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent logits of the local anchors against a (possibly global) candidate set.

    ``z1``/``z2`` (N x D) are this process's two views; ``z1_all``/``z2_all``
    (M x D, M >= N) are the same views of the whole global batch, in which the
    local rows sit at ``offset : offset + N``. The 2N anchors ``[z1; z2]`` are
    compared with the 2M candidates ``[z1_all; z2_all]`` by cosine similarity
    over ``temperature``; each anchor's own column is set to ``-inf`` (self
    excluded) and its target is the other view of the same image.

    Returns ``(logits, targets)``: 2N x 2M float32 logits and 2N class indices.
    """
    n, m = z1.shape[0], z1_all.shape[0]
    anchors = _unit(torch.cat([z1, z2], dim=0))
    candidates = _unit(torch.cat([z1_all, z2_all], dim=0))
    logits = anchors @ candidates.t() / temperature
    local = torch.arange(n, device=logits.device) + offset
    self_cols = torch.cat([local, local + m])
    targets = torch.cat([local + m, local])
    rows = torch.arange(2 * n, device=logits.device)
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[rows, self_cols] = True
    logits = logits.masked_fill(self_mask, float("-inf"))
    return logits, targets


def nt_xent_logits(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent logits with negatives from every DDP rank (one process: the 2N-way SimCLR logits).

    The other ranks' embeddings are gathered with ``gather_with_grad`` so the
    gradient of each rank's loss reaches the rank that produced them; the
    positives of the local anchors sit at offset ``rank * N`` in the gathered
    batch (all ranks must use the same local batch size).
    """
    z1_all = distributed.gather_with_grad(z1)
    z2_all = distributed.gather_with_grad(z2)
    return nt_xent_logits_local(z1, z2, z1_all, z2_all, distributed.rank() * z1.shape[0], temperature)


@_float32
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised-temperature cross entropy, averaged over the 2N anchors.

    For anchor ``i`` with positive ``j`` (the other view of the same image):
    ``-log(exp(s_ij / t) / sum_{k != i} exp(s_ik / t))`` where ``s`` is cosine
    similarity and ``k`` runs over both views of every image (all ranks).
    """
    logits, targets = nt_xent_logits(z1, z2, temperature)
    return F.cross_entropy(logits, targets)


@_float32
def queue_logits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo logits: column 0 is the positive ``q . k``, columns 1.. are ``q . queue`` (N x (1 + K), float32).

    ``k`` must come from the key (momentum) encoder; it and ``queue`` (K x D
    negatives) are detached here, so only ``q`` receives a gradient.
    """
    qn = _unit(q)
    kn = _unit(k.detach())
    pos = (qn * kn).sum(dim=1, keepdim=True)
    neg = qn @ _unit(queue.detach()).t()
    return torch.cat([pos, neg], dim=1) / temperature


@_float32
def info_nce_queue(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE: (1 + K)-way cross entropy whose correct class is the positive key.

    ``-log(exp(q.k / t) / (exp(q.k / t) + sum_j exp(q.queue_j / t)))`` on unit
    vectors, averaged over the N queries.
    """
    logits = queue_logits(q, k, queue, temperature)
    targets = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, targets)


@_float32
def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL regression loss ``||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z)``, mean over the batch.

    ``z`` is the target network's projection and is detached (no gradient).
    Range [0, 4]: 0 for aligned vectors, 4 for opposite ones.
    """
    return (2.0 - 2.0 * (_unit(p) * _unit(z.detach())).sum(dim=1)).mean()


@_float32
def simsiam_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's negative cosine similarity ``-cos(p, stopgrad(z))``, mean over the batch.

    Range [-1, 1]: -1 for aligned vectors. The stop-gradient on ``z`` is what
    prevents collapse in SimSiam.
    """
    return -(_unit(p) * _unit(z.detach())).sum(dim=1).mean()
