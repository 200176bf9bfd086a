"""Where each augmented view came from: its crop box and flip in the source image, and the map
between two views' coordinates (what CDG's cross-branch consistency needs, ``cdg.gating.cross_branch``).

Coordinates are normalised with the *edge* convention: (0, 0) is the top-left corner of the
image and (1, 1) its bottom-right corner, so a grid of h x w cells has its cell centres at
((j + 0.5) / w, (i + 0.5) / h). A view's ``box`` is (left, top, right, bottom) of the source
region it shows, in the source's normalised coordinates; ``flip`` says it was mirrored left-right
after the crop. A point t of the view (in its own normalised coordinates) shows the source point
``left + t_x' (right - left), top + t_y (bottom - top)`` with t_x' = 1 - t_x when flipped.

The two views of one image come from the same source, so a point of view a maps into view b
through the source; it lies in view b's field of view when its view-b coordinates are in [0, 1]².
Cells of view a outside that region are where the crops do not overlap.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ViewGeometry:
    """Per-sample crop box (N x 4 float32: left, top, right, bottom; normalised edges) and flip (N bool)."""

    box: torch.Tensor
    flip: torch.Tensor

    def __post_init__(self):
        if self.box.ndim != 2 or self.box.shape[1] != 4:
            raise ValueError(f"ViewGeometry.box must be N x 4, got {tuple(self.box.shape)}")
        if self.flip.shape != self.box.shape[:1]:
            raise ValueError(f"ViewGeometry.flip must have shape ({self.box.shape[0]},), got {tuple(self.flip.shape)}")
        if not bool(((self.box[:, 2] > self.box[:, 0]) & (self.box[:, 3] > self.box[:, 1])).all()):
            raise ValueError("ViewGeometry.box: every box needs right > left and bottom > top")

    @classmethod
    def identity(cls, n: int, device=None) -> "ViewGeometry":
        """The whole image, unflipped, for ``n`` samples."""
        box = torch.tensor([0.0, 0.0, 1.0, 1.0], device=device).expand(n, 4).clone()
        return cls(box, torch.zeros(n, dtype=torch.bool, device=device))

    @classmethod
    def from_corners(cls, src: torch.Tensor, flip: torch.Tensor, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> "ViewGeometry":
        """From a resized crop whose corner *pixel centres* are ``src`` (N x 4 x 2, (x, y), kornia's
        ``RandomResizedCrop`` parameters: top-left, top-right, bottom-right, bottom-left) in an
        ``in_hw`` image, resampled so that they land on the corner pixel centres of ``out_hw``."""
        src = src.to(torch.float32)
        lo, hi = src[:, 0], src[:, 2]  # (x, y) of the top-left and bottom-right pixel centres
        out = torch.tensor([out_hw[1], out_hw[0]], dtype=torch.float32, device=src.device)
        size = torch.tensor([in_hw[1], in_hw[0]], dtype=torch.float32, device=src.device)
        step = (hi - lo) / (out - 1).clamp(min=1)  # source pixels per output pixel
        left_top = (lo - 0.5 * step + 0.5) / size  # output edge 0 is half an output pixel before centre 0
        right_bottom = (hi + 0.5 * step + 0.5) / size
        return cls(torch.cat([left_top, right_bottom], dim=1), flip.to(torch.bool).reshape(-1))

    def to_source(self, t: torch.Tensor) -> torch.Tensor:
        """Points of the view (N x ... x 2, (x, y) normalised) -> the same points in the source."""
        shape = (t.shape[0],) + (1,) * (t.ndim - 2)
        tx = torch.where(self.flip.view(shape), 1.0 - t[..., 0], t[..., 0])
        left, top, right, bottom = (self.box[:, k].view(shape) for k in range(4))
        return torch.stack([left + tx * (right - left), top + t[..., 1] * (bottom - top)], dim=-1)

    def from_source(self, s: torch.Tensor) -> torch.Tensor:
        """Source points (N x ... x 2) -> this view's normalised coordinates (outside [0, 1]: not shown)."""
        shape = (s.shape[0],) + (1,) * (s.ndim - 2)
        left, top, right, bottom = (self.box[:, k].view(shape) for k in range(4))
        tx = (s[..., 0] - left) / (right - left)
        tx = torch.where(self.flip.view(shape), 1.0 - tx, tx)
        return torch.stack([tx, (s[..., 1] - top) / (bottom - top)], dim=-1)


def cell_centres(n: int, h: int, w: int, device=None) -> torch.Tensor:
    """N x h x w x 2 normalised (x, y) centres of an h x w grid of cells."""
    ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # h x w x 2
    return grid.expand(n, h, w, 2)


def cross_view_points(a: ViewGeometry, b: ViewGeometry, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For the h x w cell centres of view a: their coordinates in view b (N x h x w x 2) and
    whether view b shows them (N x h x w bool: the crops overlap there)."""
    pts = b.from_source(a.to_source(cell_centres(a.box.shape[0], h, w, a.box.device)))
    inside = ((pts >= 0.0) & (pts <= 1.0)).all(dim=-1)
    return pts, inside


def sample_at(maps: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``maps`` (N x D x h_b x w_b, cells on the normalised view) at ``points``
    (N x h x w x 2, normalised) -> N x D x h x w; differentiable in ``maps``. A point at a cell
    centre returns that cell's value exactly."""
    grid = points.to(maps.dtype) * 2.0 - 1.0  # align_corners=False: -1 / +1 are the outer edges
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)
