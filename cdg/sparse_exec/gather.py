"""Gather/GEMM/scatter primitives: a convolution evaluated at a list of output pixels only.

Pixels are flat indices ``n * H_out * W_out + y * W_out + x`` into the output map. The input is
copied once into a zero-padded NHWC buffer, so the k x k patch of every active output pixel is one
row gather (``index_select``) of C contiguous values per tap; the patches form a
``[P, k*k*C]`` matrix that one GEMM multiplies with the weight as ``[k*k*C, C_out]``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gemm_weight(weight: torch.Tensor) -> torch.Tensor:
    """C_out x C_in x k x k -> (k*k*C_in) x C_out, the column order of ``gather_patches``."""
    return weight.permute(2, 3, 1, 0).reshape(-1, weight.shape[0]).contiguous()


def active_pixels(spatial: torch.Tensor) -> torch.Tensor:
    """Flat indices (int64) of the true entries of an N x H x W bool map."""
    return spatial.reshape(-1).nonzero().squeeze(1)


def expand_blocks(cells: torch.Tensor, bh: int, bw: int, out_hw: tuple[int, int]) -> torch.Tensor:
    """Decision cells (... x H_d x W_d) -> pixels (... x H_out x W_out), ragged edges cropped."""
    if bh > 1:
        cells = cells.repeat_interleave(bh, dim=-2)[..., : out_hw[0], :]
    if bw > 1:
        cells = cells.repeat_interleave(bw, dim=-1)[..., : out_hw[1]]
    return cells


def padded_nhwc(x: torch.Tensor, pad: int) -> torch.Tensor:
    """x (N x C x H x W, any layout) as a zero-padded, contiguous N x (H+2p) x (W+2p) x C buffer."""
    n, c, h, w = x.shape
    buf = x.new_zeros((n, h + 2 * pad, w + 2 * pad, c))
    buf[:, pad : pad + h, pad : pad + w].copy_(x.permute(0, 2, 3, 1))
    return buf


def patch_index(pixels: torch.Tensor, in_hw: tuple[int, int], out_hw: tuple[int, int], kernel: int,
                stride: int, pad: int) -> torch.Tensor:
    """P x k*k row indices into the flattened padded buffer of each pixel's patch taps."""
    hp, wp = in_hw[0] + 2 * pad, in_hw[1] + 2 * pad
    per_image = out_hw[0] * out_hw[1]
    n, rest = pixels // per_image, pixels % per_image
    oy, ox = rest // out_hw[1], rest % out_hw[1]
    base = n * (hp * wp) + oy * (stride * wp) + ox * stride
    taps = torch.arange(kernel, device=pixels.device)
    offsets = (taps[:, None] * wp + taps[None, :]).reshape(-1)
    return base[:, None] + offsets[None, :]


def gather_patches(buf: torch.Tensor, pixels: torch.Tensor, in_hw: tuple[int, int], out_hw: tuple[int, int],
                   kernel: int, stride: int, pad: int) -> torch.Tensor:
    """P x (k*k*C) im2col rows of the active ``pixels`` from ``padded_nhwc``'s buffer."""
    c = buf.shape[-1]
    index = patch_index(pixels, in_hw, out_hw, kernel, stride, pad)
    return buf.reshape(-1, c).index_select(0, index.reshape(-1)).reshape(index.shape[0], -1)


def conv_at(x: torch.Tensor, w_gemm: torch.Tensor, pixels: torch.Tensor, out_hw: tuple[int, int],
            kernel: int, stride: int, pad: int) -> torch.Tensor:
    """P x C_out: conv(x, W) at the output ``pixels`` only (``w_gemm`` = ``gemm_weight(W)``)."""
    if pixels.numel() == 0:
        return x.new_zeros((0, w_gemm.shape[1]))
    in_hw = (x.shape[2], x.shape[3])
    if kernel == 1 and pad == 0:
        rows = x[:, :, ::stride, ::stride].permute(0, 2, 3, 1).reshape(-1, x.shape[1]).index_select(0, pixels)
        return rows @ w_gemm
    cols = gather_patches(padded_nhwc(x, pad), pixels, in_hw, out_hw, kernel, stride, pad)
    return cols @ w_gemm


def pixel_view(y: torch.Tensor) -> torch.Tensor:
    """N x C x H x W (NCHW or channels_last) as an N x (H*W) x C view, for scatter by pixel."""
    return y.permute(0, 2, 3, 1).flatten(1, 2)


def scatter_add(y: torch.Tensor, pixels: torch.Tensor, values: torch.Tensor, channels: torch.Tensor | None = None) -> None:
    """y[pixel, channel] += values (P x C' rows; ``channels``: which C' of y's channels, default all)."""
    if pixels.numel() == 0:
        return
    if channels is None and y.is_contiguous(memory_format=torch.channels_last):  # one op on the N*H*W x C view
        y.permute(0, 2, 3, 1).view(-1, y.shape[1]).index_add_(0, pixels, values)
        return
    view = pixel_view(y)
    per_image = view.shape[1]
    n, rest = pixels // per_image, pixels % per_image
    if channels is None:
        view.index_put_((n, rest), values, accumulate=True)
    else:
        view.index_put_((n[:, None], rest[:, None], channels[None, :]), values, accumulate=True)


def dense_conv(x: torch.Tensor, weight: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    return F.conv2d(x, weight, None, stride, pad)


def tile_conv(x: torch.Tensor, weight: torch.Tensor, cells: torch.Tensor, grid: tuple[int, int], block: int,
              out_hw: tuple[int, int], stride: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The conv on the active b x b output blocks as a batch of input tiles (DynConv's form): each
    active cell (flat index into N x H_d x W_d) gathers its ((b-1)s+k)^2 input tile, one dense conv
    (no padding) over all tiles gives their b x b outputs. Returns (pixels, values P x C_out),
    outputs of ragged edge blocks outside the map dropped."""
    k = weight.shape[-1]
    n, c, h, w = x.shape
    tile = (block - 1) * stride + k
    # pad so that every tile of the decision grid fits inside the buffer
    need_h, need_w = (grid[0] - 1) * block * stride + tile, (grid[1] - 1) * block * stride + tile
    buf = x.new_zeros((n, max(need_h, h + 2 * pad), max(need_w, w + 2 * pad), c))
    buf[:, pad : pad + h, pad : pad + w].copy_(x.permute(0, 2, 3, 1))
    hp, wp = buf.shape[1], buf.shape[2]
    per_image = grid[0] * grid[1]
    img, rest = cells // per_image, cells % per_image
    cy, cx = rest // grid[1], rest % grid[1]
    taps = torch.arange(tile, device=x.device)
    offsets = (taps[:, None] * wp + taps[None, :]).reshape(-1)
    start = img * (hp * wp) + cy * (block * stride * wp) + cx * (block * stride)
    tiles = buf.reshape(-1, c).index_select(0, (start[:, None] + offsets[None, :]).reshape(-1))
    tiles = tiles.view(len(cells), tile, tile, c).permute(0, 3, 1, 2)  # channels_last view, no copy
    out = F.conv2d(tiles, weight.contiguous(memory_format=torch.channels_last), None, stride, 0)
    values = out.permute(0, 2, 3, 1).reshape(-1, weight.shape[0])
    inner = torch.arange(block, device=x.device)
    oy = (cy * block)[:, None, None] + inner[None, :, None]
    ox = (cx * block)[:, None, None] + inner[None, None, :]
    pixels = (img[:, None, None] * (out_hw[0] * out_hw[1]) + oy * out_hw[1] + ox).reshape(-1)
    if out_hw[0] % block or out_hw[1] % block:
        valid = ((oy < out_hw[0]) & (ox < out_hw[1])).reshape(-1)
        pixels, values = pixels[valid], values[valid]
    return pixels, values
