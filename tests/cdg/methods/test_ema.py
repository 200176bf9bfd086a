"""The EMA update of target networks is bit-identical to the fused ``torch._foreach_lerp_`` it replaced."""
import pytest
import torch

from cdg.methods.base import ema_update, frozen_copy, mlp

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().view({torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float64: torch.int64}[t.dtype])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("momentum", [0.0, 0.3, 0.5, 0.7, 0.99, 0.996, 0.99999])
def test_ema_update_matches_foreach_lerp_bitwise(device, dtype, momentum):
    torch.manual_seed(0)
    online = mlp(24, 48, 12).to(device=device, dtype=dtype)
    target = frozen_copy(online)
    with torch.no_grad():
        for param in target.parameters():
            param.copy_(torch.randn_like(param) * 3)
    reference = [p.detach().clone() for p in target.parameters()]
    for _ in range(3):  # a few steps, so rounding would compound
        torch._foreach_lerp_(reference, [p.detach() for p in online.parameters()], 1.0 - momentum)
        ema_update(target, online, momentum)
    for got, want in zip(target.parameters(), reference):
        assert torch.equal(_bits(got), _bits(want))


def test_ema_update_at_momentum_one_is_a_no_op():
    online, target = mlp(4, 8, 2), mlp(4, 8, 2)
    before = [p.detach().clone() for p in target.parameters()]
    ema_update(target, online, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, target.parameters()))
