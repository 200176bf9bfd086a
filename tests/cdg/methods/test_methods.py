import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from hwsim.trace.errors import UserError
from cdg.methods.byol import BYOL
from cdg.methods.moco import MoCo
from cdg.methods.registry import METHODS, build_method
from cdg.methods.simclr import SimCLR
from cdg.methods.simsiam import SimSiam
from cdg.methods.base import MethodOutput, SSLMethod, cosine_momentum
from cdg.methods.losses import (
    byol_loss,
    info_nce_queue,
    nt_xent,
    nt_xent_logits_local,
    queue_logits,
    simsiam_loss,
)


class TinyBackbone(nn.Module):
    def __init__(self, feature_dim: int = 8):
        super().__init__()
        self.feature_dim = feature_dim
        self.net = nn.Sequential(
            nn.Conv2d(3, feature_dim, 3, padding=1, bias=False),
            nn.BatchNorm2d(feature_dim),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x):
        return self.net(x)


def make_cfg(name, **overrides):
    cfg = dict(
        name=name,
        proj_hidden_dim=16,
        proj_dim=6,
        pred_hidden_dim=12,
        temperature=0.5,
        queue_size=10,
        momentum=0.9,
        momentum_final=1.0,
    )
    cfg.update(overrides)
    return SimpleNamespace(**cfg)


def make(name, **overrides):
    torch.manual_seed(0)
    return build_method(make_cfg(name, **overrides), TinyBackbone())


def views(n=4, size=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randn(n, 3, size, size, generator=g)


E = torch.eye(3)


# ---------------------------------------------------------------- losses
def test_nt_xent_identical_positives_orthogonal_negatives():
    t = 0.5
    z = torch.stack([E[0], E[1]])
    # every anchor: positive sim 1, two other candidates at sim 0 (self excluded)
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert nt_xent(z, z.clone(), t).item() == pytest.approx(expected, rel=1e-6)
    # scale does not matter (cosine similarity)
    assert nt_xent(3 * z, 0.5 * z, t).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_positive_orthogonal_negative_identical():
    t = 0.5
    z1 = torch.stack([E[0], E[1]])
    z2 = torch.stack([E[1], E[0]])
    # anchor e1: positive (other view) is e2 -> sim 0; candidates: e2 (0), e2 (0, the positive), e1 (1)
    expected = -math.log(1 / (2 + math.exp(1 / t)))
    assert nt_xent(z1, z2, t).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_split_over_ranks_equals_full_batch():
    """Each simulated rank scores its local anchors against the gathered batch, positives at rank * N."""
    torch.manual_seed(0)
    z1 = torch.randn(6, 5, requires_grad=True)
    z2 = torch.randn(6, 5, requires_grad=True)
    full = nt_xent(z1, z2, 0.3)
    (g1_full, g2_full) = torch.autograd.grad(full, (z1, z2))
    per_rank = []
    for rank in range(2):
        sl = slice(3 * rank, 3 * rank + 3)
        logits, targets = nt_xent_logits_local(z1[sl], z2[sl], z1, z2, 3 * rank, 0.3)
        assert logits.shape == (6, 12)
        per_rank.append(nn.functional.cross_entropy(logits, targets))
    split = torch.stack(per_rank).mean()
    assert split.item() == pytest.approx(full.item(), rel=1e-6)
    g1, g2 = torch.autograd.grad(split, (z1, z2))
    torch.testing.assert_close(g1, g1_full)
    torch.testing.assert_close(g2, g2_full)


def test_info_nce_with_known_queue():
    q = torch.stack([E[0]])
    k = torch.stack([2 * E[0]])
    queue = torch.stack([E[1], -E[0]])
    logits = queue_logits(q, k, queue, 1.0)
    torch.testing.assert_close(logits, torch.tensor([[1.0, 0.0, -1.0]]))
    expected = -math.log(math.e / (math.e + 1 + math.exp(-1)))
    assert info_nce_queue(q, k, queue, 1.0).item() == pytest.approx(expected, rel=1e-6)
    # temperature divides the cosine similarities
    expected_t = -math.log(math.exp(5) / (math.exp(5) + 1 + math.exp(-5)))
    assert info_nce_queue(q, k, queue, 0.2).item() == pytest.approx(expected_t, rel=1e-5)


def test_byol_and_simsiam_losses_by_hand():
    a = torch.stack([E[0], E[1]])
    assert byol_loss(a, 5 * a).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(a, -a).item() == pytest.approx(4.0)
    assert byol_loss(a, torch.stack([E[1], E[2]])).item() == pytest.approx(2.0)
    assert simsiam_loss(a, 2 * a).item() == pytest.approx(-1.0)
    assert simsiam_loss(a, -a).item() == pytest.approx(1.0)


@pytest.mark.parametrize("loss_fn", [byol_loss, simsiam_loss])
def test_target_side_of_regression_losses_gets_no_gradient(loss_fn):
    p = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(4, 3, requires_grad=True)
    loss_fn(p, z).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None


def test_info_nce_key_and_queue_get_no_gradient():
    q = torch.randn(4, 3, requires_grad=True)
    k = torch.randn(4, 3, requires_grad=True)
    queue = torch.randn(5, 3, requires_grad=True)
    info_nce_queue(q, k, queue, 0.2).backward()
    assert q.grad is not None and k.grad is None and queue.grad is None


def test_losses_are_float32_under_bf16_inputs():
    z = torch.randn(4, 6).bfloat16()
    assert nt_xent(z, z + 0.1, 0.2).dtype == torch.float32
    assert info_nce_queue(z, z, torch.randn(5, 6), 0.2).dtype == torch.float32
    assert byol_loss(z, z).dtype == torch.float32
    assert simsiam_loss(z, z).dtype == torch.float32


# ---------------------------------------------------------------- methods
def test_build_method_names_and_unknown_name():
    assert METHODS == ("simclr", "moco", "byol", "simsiam")
    types = {"simclr": SimCLR, "moco": MoCo, "byol": BYOL, "simsiam": SimSiam}
    for name in METHODS:
        method = make(name)
        assert isinstance(method, types[name]) and isinstance(method, SSLMethod)
        assert method.name == name
        assert isinstance(method.backbone, TinyBackbone)
    with pytest.raises(UserError, match="simclr, moco, byol, simsiam"):
        build_method(make_cfg("barlow"), TinyBackbone())
    with pytest.raises(UserError, match="method.queue_size"):
        build_method(make_cfg("moco", queue_size=None), TinyBackbone())


def test_head_architectures():
    simclr, moco, byol, simsiam = (make(n) for n in METHODS)
    kinds = lambda seq: [type(m).__name__ for m in seq]  # noqa: E731
    assert kinds(simclr.projector) == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert kinds(moco.projector) == ["Linear", "ReLU", "Linear"]
    assert kinds(byol.projector) == kinds(byol.predictor) == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert kinds(simsiam.projector) == [
        "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d",
    ]
    assert simsiam.projector[-1].affine is False and simsiam.projector[1].affine is True
    assert kinds(simsiam.predictor) == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert simsiam.projector[-2].out_features == 6 and simsiam.predictor[0].out_features == 12


@pytest.mark.parametrize("name", METHODS)
def test_one_optimisation_step(name):
    method = make(name)
    method.train()
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    out = method(*views())
    assert isinstance(out, MethodOutput)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.logs and all(isinstance(v, float) and math.isfinite(v) for v in out.logs.values())
    opt.zero_grad()
    out.loss.backward()
    trainable = [n for n, p in method.named_parameters() if p.requires_grad]
    for n, p in method.named_parameters():
        if n.startswith("target_"):
            assert not p.requires_grad and p.grad is None, n
        elif p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), n
    opt.step()
    method.momentum_update(0.01)
    after = method.state_dict()
    assert not torch.equal(before["backbone.net.0.weight"], after["backbone.net.0.weight"])
    assert all(not n.startswith("target_") for n in trainable)
    if name in ("moco", "byol"):  # target moved (slightly) towards the updated online weights
        assert not torch.equal(before["target_backbone.net.0.weight"], after["target_backbone.net.0.weight"])
    out2 = method(*views(seed=2))
    assert torch.isfinite(out2.loss)


@pytest.mark.parametrize("name", METHODS)
def test_forward_under_bf16_autocast(name):
    method = make(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method(*views())
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()


def test_simclr_identical_views_logs_positive_similarity_one():
    method = make("simclr")
    v, _ = views()
    out = method(v, v)
    assert out.logs["pos_sim"] == pytest.approx(1.0, abs=1e-5)
    assert out.logs["acc"] == pytest.approx(1.0)


def test_moco_key_encoder_and_queue_get_no_gradient():
    method = make("moco")
    out = method(*views())
    out.loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in method.target_backbone.parameters())
    assert all(p.grad is None and not p.requires_grad for p in method.target_projector.parameters())
    assert not method.queue.requires_grad
    assert method.backbone.net[0].weight.grad is not None
    assert set(out.logs) == {"pos_sim", "neg_sim", "queue_acc"}


def test_byol_and_simsiam_target_side_gets_no_gradient():
    byol = make("byol")
    byol(*views()).loss.backward()
    assert all(p.grad is None for p in byol.target_backbone.parameters())
    assert all(p.grad is None for p in byol.target_projector.parameters())
    assert byol.predictor[0].weight.grad is not None

    # SimSiam: the z branch is stop-gradient, so the loss gradient w.r.t. the projections
    # equals that of the loss with z explicitly detached (only the predictor path carries it).
    simsiam = make("simsiam")
    v1, v2 = views()
    z1 = simsiam.projector(simsiam.backbone(v1))
    z2 = simsiam.projector(simsiam.backbone(v2))
    loss = 0.5 * (simsiam_loss(simsiam.predictor(z1), z2) + simsiam_loss(simsiam.predictor(z2), z1))
    g = torch.autograd.grad(loss, (z1, z2))
    z1d, z2d = z1.detach().requires_grad_(), z2.detach().requires_grad_()
    ref = 0.5 * (
        simsiam_loss(simsiam.predictor(z1d), z2d.detach()) + simsiam_loss(simsiam.predictor(z2d), z1d.detach())
    )
    g_ref = torch.autograd.grad(ref, (z1d, z2d))
    torch.testing.assert_close(g[0], g_ref[0])
    torch.testing.assert_close(g[1], g_ref[1])


def _perturb_online(method):
    with torch.no_grad():
        for p in list(method.backbone.parameters()) + list(method.projector.parameters()):
            p.add_(torch.randn_like(p))


def test_moco_momentum_update_is_exact_constant_ema():
    method = make("moco", momentum=0.9)
    _perturb_online(method)
    online = method.backbone.net[0].weight.detach().clone()
    target = method.target_backbone.net[0].weight.detach().clone()
    head_o, head_t = method.projector[2].bias.detach().clone(), method.target_projector[2].bias.detach().clone()
    method.momentum_update(0.7)  # progress does not matter for MoCo
    torch.testing.assert_close(method.target_backbone.net[0].weight, 0.9 * target + 0.1 * online)
    torch.testing.assert_close(method.target_projector[2].bias, 0.9 * head_t + 0.1 * head_o)
    torch.testing.assert_close(method.backbone.net[0].weight, online)  # online untouched


def test_byol_momentum_schedule_and_update():
    assert cosine_momentum(0.996, 1.0, 0.0) == pytest.approx(0.996)
    assert cosine_momentum(0.996, 1.0, 1.0) == pytest.approx(1.0)
    assert cosine_momentum(0.996, 1.0, 0.5) == pytest.approx(0.998)
    assert cosine_momentum(0.9, 0.99, 2.0) == pytest.approx(0.99)  # clamped

    method = make("byol", momentum=0.8, momentum_final=1.0)
    assert method.current_momentum(0.0) == pytest.approx(0.8)
    _perturb_online(method)
    online = method.projector[0].weight.detach().clone()
    target = method.target_projector[0].weight.detach().clone()
    method.momentum_update(0.5)  # tau = 0.9
    torch.testing.assert_close(method.target_projector[0].weight, 0.9 * target + 0.1 * online)
    frozen = method.target_projector[0].weight.detach().clone()
    method.momentum_update(1.0)  # tau = 1: target frozen
    torch.testing.assert_close(method.target_projector[0].weight, frozen)


def test_moco_queue_initialised_normalised_and_wraps_around():
    method = make("moco", queue_size=5)
    torch.testing.assert_close(method.queue.norm(dim=1), torch.ones(5))
    a = torch.arange(3, dtype=torch.float32)[:, None].expand(3, 6) + 1
    method.enqueue(a)
    assert method.queue_ptr.item() == 3
    method.enqueue(a + 10)  # wraps: rows 3, 4, 0
    assert method.queue_ptr.item() == 1
    torch.testing.assert_close(method.queue[:, 0], torch.tensor([13.0, 2.0, 3.0, 11.0, 12.0]))
    # more keys than the queue holds: only the last 5 survive, in sequential positions
    b = torch.arange(7, dtype=torch.float32)[:, None].expand(7, 6) + 100
    method.enqueue(b)  # key j goes to (1 + j) % 5; keys 2..6 survive
    assert method.queue_ptr.item() == (1 + 7) % 5
    torch.testing.assert_close(method.queue[:, 0], torch.tensor([104.0, 105.0, 106.0, 102.0, 103.0]))


def test_moco_forward_enqueues_both_views_only_in_training():
    method = make("moco", queue_size=7)  # not a multiple of the 2 x 4 keys per step
    method.train()
    method(*views())
    assert method.queue_ptr.item() == 1
    method(*views(seed=3))
    assert method.queue_ptr.item() == 2
    torch.testing.assert_close(method.queue.norm(dim=1), torch.ones(7))
    snapshot = method.queue.clone()
    method.eval()
    with torch.no_grad():
        method(*views())
    assert method.queue_ptr.item() == 2 and torch.equal(method.queue, snapshot)


@pytest.mark.parametrize("name", ["moco", "byol"])
def test_state_dict_holds_targets_queue_and_round_trips(name):
    method = make(name)
    method(*views())
    _perturb_online(method)
    method.momentum_update(0.3)
    state = method.state_dict()
    assert any(k.startswith("target_backbone.") for k in state)
    assert any(k.startswith("target_projector.") for k in state)
    if name == "moco":
        assert "queue" in state and "queue_ptr" in state
    torch.manual_seed(123)
    fresh = build_method(make_cfg(name), TinyBackbone())
    fresh.load_state_dict(state)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_losses_stay_float32_inside_bf16_autocast():
    z = torch.randn(4, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = nt_xent_logits_local(z, z + 0.1, z, z + 0.1, 0, 0.2)
        assert logits.dtype == torch.float32
        assert queue_logits(z, z, torch.randn(5, 6), 0.2).dtype == torch.float32


# ---------------------------------------------------------------- DDP (2 gloo processes on CPU)
WORLD = 2


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        # nt_xent: each rank holds 3 of 6 rows; gradients must reach the owners through the gather.
        torch.manual_seed(0)
        z1_full, z2_full = torch.randn(6, 5), torch.randn(6, 5)
        sl = slice(3 * rank, 3 * rank + 3)
        z1 = z1_full[sl].clone().requires_grad_()
        z2 = z2_full[sl].clone().requires_grad_()
        loss = nt_xent(z1, z2, 0.3)
        g1, g2 = torch.autograd.grad(loss, (z1, z2))

        # MoCo inside DDP: one training step; keys of both ranks enter every rank's queue.
        torch.manual_seed(0)
        moco = nn.parallel.DistributedDataParallel(build_method(make_cfg("moco", queue_size=12), TinyBackbone()))
        opt = torch.optim.SGD([p for p in moco.parameters() if p.requires_grad], lr=0.1)
        out = moco(*views(n=2, seed=10 + rank))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        moco.module.momentum_update(0.1)

        # SimCLR inside DDP: one step runs end to end.
        torch.manual_seed(0)
        simclr = nn.parallel.DistributedDataParallel(build_method(make_cfg("simclr"), TinyBackbone()))
        s_out = simclr(*views(n=2, seed=20 + rank))
        s_out.loss.backward()
        torch.save(
            {
                "loss": loss.detach(),
                "g1": g1,
                "g2": g2,
                "queue": moco.module.queue.clone(),
                "ptr": moco.module.queue_ptr.clone(),
                "weight": moco.module.backbone.net[0].weight.detach().clone(),
                "simclr_loss": s_out.loss.detach(),
                "simclr_acc": s_out.logs["acc"],
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_ddp_gathers_negatives_and_shares_the_queue(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    torch.manual_seed(0)
    z1 = torch.randn(6, 5, requires_grad=True)
    z2 = torch.randn(6, 5, requires_grad=True)
    full = nt_xent(z1, z2, 0.3)
    g1_full, g2_full = torch.autograd.grad(full, (z1, z2))
    mean_loss = sum(r["loss"] for r in results) / WORLD
    assert mean_loss.item() == pytest.approx(full.item(), rel=1e-6)
    # DDP averages gradients over ranks, so each rank's gradient / WORLD is its slice of the full one.
    for rank, r in enumerate(results):
        sl = slice(3 * rank, 3 * rank + 3)
        torch.testing.assert_close(r["g1"] / WORLD, g1_full[sl])
        torch.testing.assert_close(r["g2"] / WORLD, g2_full[sl])

    # 2 ranks x 2 views x 2 images = 8 keys per step into a queue of 12
    assert results[0]["ptr"].item() == results[1]["ptr"].item() == 8
    torch.testing.assert_close(results[0]["queue"], results[1]["queue"])
    torch.testing.assert_close(results[0]["weight"], results[1]["weight"])
    assert all(math.isfinite(r["simclr_loss"].item()) for r in results)
