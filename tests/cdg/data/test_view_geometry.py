"""The views' crop geometry: hand-made boxes and flips map as computed by hand, and the geometry the
augmentation records is exactly where its pixels came from."""
import pytest
import torch

from cdg.data.augment import ViewRecipe, _build_view, build_two_view_augment, view_geometry
from cdg.data.view_geometry import ViewGeometry, cell_centres, cross_view_points, sample_at


def geometry(boxes, flips):
    return ViewGeometry(torch.tensor(boxes, dtype=torch.float32), torch.tensor(flips))


def test_points_of_one_view_land_where_computed_by_hand_in_the_other():
    a = geometry([[0.0, 0.0, 0.5, 1.0]], [False])  # left half
    b = geometry([[0.25, 0.0, 1.0, 1.0]], [True])  # right three quarters, mirrored
    points, inside = cross_view_points(a, b, 2, 4)
    # view a's cell centres x = 1/8, 3/8, 5/8, 7/8 show source x = 1/16, 3/16, 5/16, 7/16;
    # in b (before the flip) (s - 1/4) / (3/4) = -1/4, -1/12, 1/12, 1/4; flipped: 5/4, 13/12, 11/12, 3/4
    assert points[0, 0, :, 0].tolist() == pytest.approx([1.25, 13 / 12, 11 / 12, 0.75])
    assert points[0, :, 0, 1].tolist() == pytest.approx([0.25, 0.75])
    assert inside[0].tolist() == [[False, False, True, True]] * 2


def test_disjoint_crops_have_no_overlap_and_identical_ones_map_cell_to_cell():
    a = geometry([[0.0, 0.0, 0.4, 0.4], [0.1, 0.2, 0.9, 0.7]], [False, True])
    b = geometry([[0.5, 0.5, 1.0, 1.0], [0.1, 0.2, 0.9, 0.7]], [False, True])
    points, inside = cross_view_points(a, b, 3, 5)
    assert not inside[0].any() and inside[1].all()
    assert torch.allclose(points[1], cell_centres(1, 3, 5)[0], atol=1e-6)
    maps = torch.rand(2, 4, 3, 5)
    assert torch.allclose(sample_at(maps, points)[1], maps[1], atol=1e-6)  # cell centres sample exactly


def test_round_trip_through_the_source_and_a_flip_mirrors():
    g = geometry([[0.2, 0.1, 0.6, 0.9]], [True])
    t = torch.rand(1, 7, 2)
    assert torch.allclose(g.from_source(g.to_source(t)), t, atol=1e-6)
    left = g.to_source(torch.tensor([[[0.0, 0.0]]]))
    assert left[0, 0].tolist() == pytest.approx([0.6, 0.1])  # flipped: the view's left edge is the box's right


def test_bad_boxes_are_refused():
    with pytest.raises(ValueError, match="right > left"):
        geometry([[0.5, 0.0, 0.5, 1.0]], [False])
    with pytest.raises(ValueError, match="N x 4"):
        ViewGeometry(torch.zeros(2, 3), torch.zeros(2, dtype=torch.bool))


def test_recorded_geometry_is_where_the_view_pixels_came_from():
    recipe = ViewRecipe((0.2, 1.0), 0.5, (0.0, 0.0, 0.0, 0.0), 0.0, 0.0, 0.0, 3, 0.0)
    view = _build_view(recipe, 12)
    h, w = 20, 30
    xs, ys = (torch.arange(w) + 0.5) / w, (torch.arange(h) + 0.5) / h
    ramp = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), torch.zeros(h, w)])  # pixel = its (x, y)
    torch.manual_seed(0)
    out = view(ramp.expand(16, 3, h, w).clone())
    g = view_geometry(view, (h, w), 12)
    assert g.flip.any() and not g.flip.all()
    source = g.to_source(cell_centres(16, 12, 12))
    assert torch.allclose(out[:, 0], source[..., 0], atol=1e-5)  # bilinear resampling of a ramp is exact
    assert torch.allclose(out[:, 1], source[..., 1], atol=1e-5)


def test_two_view_augment_keeps_both_views_geometry():
    aug = build_two_view_augment("simclr", 8, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert aug.last_geometry is None
    aug(torch.randint(0, 255, (5, 3, 8, 8), dtype=torch.uint8))
    g1, g2 = aug.last_geometry
    assert g1.box.shape == g2.box.shape == (5, 4) and g1.flip.shape == (5,)
    assert not torch.equal(g1.box, g2.box)  # independent crops
