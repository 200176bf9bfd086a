"""The synthetic gated-trace generator (hwsim.trace.synthetic) used by the benches."""
import numpy as np

from hwsim.trace import GateGrid, load_trace
from hwsim.trace.synthetic import gate_3x3_convs, iid_masks, smooth_masks, write_synthetic_trace
from tests.hwsim.helpers import tiny_network, ungate


def test_gates_every_3x3_conv_but_the_stem():
    specs = gate_3x3_convs([ungate(s) for s in tiny_network()], GateGrid(G=2, S=4, b=1), stem="stem")
    assert [s.name for s in specs if s.gate is not None] == ["g1", "g2"]
    assert all(s.gate.base_channels == s.in_shape[0] // 2 for s in specs if s.gate is not None)


def test_smooth_masks_hit_their_drawn_density():
    rng = np.random.default_rng(0)
    m = smooth_masks((6, 4, 8, 8), rng, (0.3, 0.7))
    per_image = m.reshape(6, -1).mean(axis=1)
    assert m.dtype == bool and np.all((per_image > 0.25) & (per_image < 0.75))


def test_same_seed_same_trace_with_activation_sample(tmp_path):
    specs = tiny_network()
    for name in ("a", "b"):
        write_synthetic_trace(tmp_path / name, specs, 5, np.random.default_rng(7), masks=iid_masks(0.4),
                              act_images=3, meta={"note": "test"})
    a, b = load_trace(tmp_path / "a"), load_trace(tmp_path / "b")
    assert a.meta == {"note": "test", "synthetic": True} and a.n_mask_images == 5
    for la, lb in zip(a.layers, b.layers):
        assert (la.gate_blocks is None) == (la.spec.gate is None)
        if la.gate_blocks is not None:
            assert np.array_equal(la.gate_blocks, lb.gate_blocks)
        if la.spec.op == "conv":
            assert la.act_masks.shape[0] == 3 and np.array_equal(la.act_masks, lb.act_masks)
        else:
            assert la.act_masks is None
