"""Geometry of one CPU DCN v1 call: shapes, chunks, bilinear sampling tables.

Dai et al., "Deformable Convolutional Networks", ICCV 2017, eq. (1)-(2):

    y(p0) = sum_k w(p_k) · x(p0 + p_k + Δp_k),
    x(p)  = sum_q G(q, p) · x(q),   G(q, p) = g(q_y, p_y) · g(q_x, p_x),
    g(a, b) = max(0, 1 - |a - b|)          (bilinear interpolation).

:class:`DeformGeometry` holds what one call of
:mod:`segext.ops.deform_conv_cpu` needs besides the tensors: the output size,
the channel pieces (a conv group × deformable group each), the chunks of
output pixels, the regular grid ``p0 + p_k`` and, per chunk, the neighbours
and bilinear weights of every sample (mmcv's boundary convention).
"""
from typing import List, Tuple

import torch
from torch import Tensor

__all__ = ['DeformGeometry']


def _output_size(size: int, kernel: int, stride: int, padding: int,
                 dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _channel_pieces(channels: int, groups: int,
                    deform_groups: int) -> List[Tuple[int, int, int, int]]:
    """Split the input channels where a conv group or deformable group ends.

    Returns ``(c0, c1, group, deform_group)`` per piece; a piece belongs to
    one conv group (one block of the weight) and one deformable group (one
    set of offsets). One piece when ``groups == deform_groups == 1``.
    """
    per_group = channels // groups
    per_deform_group = channels // deform_groups
    cuts = sorted({0, channels}
                  | {g * per_group
                     for g in range(groups)}
                  | {d * per_deform_group
                     for d in range(deform_groups)})
    return [(c0, c1, c0 // per_group, c0 // per_deform_group)
            for c0, c1 in zip(cuts[:-1], cuts[1:])]


class DeformGeometry:
    """Shapes, channel pieces and the regular grid p0 + p_k of eq. (1)."""

    def __init__(self, input: Tensor, weight: Tensor, stride: Tuple[int, int],
                 padding: Tuple[int, int], dilation: Tuple[int, int],
                 groups: int, deform_groups: int) -> None:
        self.batch, self.channels, self.height, self.width = input.shape
        self.out_channels, _, kh, kw = weight.shape
        self.kernel = (kh, kw)
        self.taps = kh * kw
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.groups, self.deform_groups = groups, deform_groups
        self.out_h = _output_size(self.height, kh, stride[0], padding[0],
                                  dilation[0])
        self.out_w = _output_size(self.width, kw, stride[1], padding[1],
                                  dilation[1])
        if self.out_h <= 0 or self.out_w <= 0:
            raise ValueError(
                f'deformable conv input of size {self.height}x{self.width} is '
                f'too small for kernel {kh}x{kw}, padding {padding}, '
                f'dilation {dilation} (output would be '
                f'{self.out_h}x{self.out_w})')
        self.out_pixels = self.out_h * self.out_w
        self.out_per_group = self.out_channels // groups
        self.in_per_group = self.channels // groups
        self.pieces = _channel_pieces(self.channels, groups, deform_groups)

    def chunks(self, chunk_bytes: int, itemsize: int,
               workers: int) -> List[Tuple[int, int, int]]:
        """(image, first, last) output-pixel ranges within one image.

        Each chunk's columns (one piece) take at most ``chunk_bytes``. Work
        whose columns fit one chunk is one chunk (the op runs it in the
        calling thread, its GEMM on torch's intra-op threads: faster than
        two half chunks on two one-thread workers, docs/deform_conv.md,
        "Eighth round"); more work gets a multiple of ``workers`` chunks of
        equal size.
        """
        widest = max(c1 - c0 for c0, c1, _, _ in self.pieces)
        per_pixel = self.taps * widest * itemsize
        pixels = self.batch * self.out_pixels
        count = -(-pixels * per_pixel // chunk_bytes)
        if count > 1:
            # a multiple of the workers, so that they finish together
            count = -(-count // workers) * workers
        step = min(-(-pixels // count), max(1, chunk_bytes // per_pixel),
                   self.out_pixels)
        return [(n, p0, min(p0 + step, self.out_pixels))
                for n in range(self.batch)
                for p0 in range(0, self.out_pixels, step)]

    def offset_planes(self, offset: Tensor) -> Tensor:
        """(B, dg*K*2, Ho, Wo) -> (B, dg, K, 2, Ho*Wo) view.

        mmcv's layout: per deformable group, per tap (row-major), (dy, dx).
        """
        expected = (self.batch, self.deform_groups * self.taps * 2, self.out_h,
                    self.out_w)
        if tuple(offset.shape) != expected:
            raise ValueError(f'offset must have shape {expected} (B, '
                             f'deform_groups*kh*kw*2, Ho, Wo), got '
                             f'{tuple(offset.shape)}')
        return offset.view(self.batch, self.deform_groups, self.taps, 2,
                           self.out_pixels)

    def regular_grid(self, dtype: torch.dtype) -> Tensor:
        """(2, K, Ho*Wo): p0 + p_k of eq. (1), (y, x) per tap and pixel."""
        kh, kw = self.kernel
        tap_y = torch.arange(kh).repeat_interleave(kw) * self.dilation[0]
        tap_x = torch.arange(kw).repeat(kh) * self.dilation[1]
        ys = torch.arange(self.out_h) * self.stride[0] - self.padding[0]
        xs = torch.arange(self.out_w) * self.stride[1] - self.padding[1]
        grid_y = (tap_y[:, None, None] + ys[:, None]).expand(
            -1, -1, self.out_w)
        grid_x = (tap_x[:, None, None] + xs).expand(-1, self.out_h, -1)
        return torch.stack([grid_y,
                            grid_x]).to(dtype).view(2, self.taps,
                                                    self.out_pixels)

    def bilinear(self, offsets: Tensor, grid: Tensor, n: int, p0: int,
                 p1: int):
        """Neighbours and bilinear weights of the samples of one chunk.

        Eq. (2) with mmcv's boundary convention: a sample at (y, x) outside
        (-1, H) × (-1, W) is zero, otherwise each of its neighbours (y0, x0),
        (y0, x0+1), (y0+1, x0), (y0+1, x0+1) outside the map counts as zero.
        Such a neighbour gets weight 0 and the row of the nearest pixel of
        the map (so every index is a real row: no padding row is needed).
        Computed in planes (pixels innermost) so every op is a long
        contiguous loop.

        Args:
            offsets (Tensor): (B, dg, K, 2, Ho*Wo), see offset_planes.
            grid (Tensor): (2, K, Ho*Wo), see regular_grid.

        Returns:
            index (4, dg, K, L) int32: rows of the channels-last input
                (pixel (n, y, x) is row n*H*W + y*W + x) of the 4 neighbours.
            weight (4, dg, K, L): bilinear weights, 0 where not ``valid``.
            valid (4, dg, K, L) bool: the neighbour is inside the map (and
                its sample inside (-1, H) × (-1, W)).
            frac (2, dg, K, L): (y - y0, x - x0), for the offset gradient.
        """
        off = offsets[n, ..., p0:p1]  # (dg, K, 2, L)
        y = off[:, :, 0] + grid[0, :, p0:p1]  # (dg, K, L)
        x = off[:, :, 1] + grid[1, :, p0:p1]
        inside = (y > -1) & (y < self.height) & (x > -1) & (x < self.width)
        # samples outside read nothing; keep their coordinates small
        y.clamp_(-2, self.height + 1)
        x.clamp_(-2, self.width + 1)
        y0, x0 = y.floor(), x.floor()
        frac = torch.stack([y.sub_(y0), x.sub_(x0)])  # (2, dg, K, L)
        y0, x0 = y0.int(), x0.int()
        # is the low / high row (column) of the neighbours in the map?
        row0 = (y0 >= 0) & inside
        row1 = (y0 < self.height - 1) & inside
        col0, col1 = x0 >= 0, x0 < self.width - 1
        valid = torch.stack(
            [row0 & col0, row0 & col1, row1 & col0, row1 & col1])
        # bilinear weights (1-ly, ly) ⊗ (1-lx, lx)
        ly, lx = frac
        hy, hx = 1 - ly, 1 - lx
        weight = torch.stack([hy * hx, hy * lx, ly * hx, ly * lx])
        weight.masked_fill_(~valid, 0)
        # rows of the neighbours, clamped into the map
        base = n * self.height * self.width
        ys = torch.stack([y0, y0 + 1]).clamp_(0, self.height - 1)
        xs = torch.stack([x0, x0 + 1]).clamp_(0, self.width - 1)
        ys = ys.mul_(self.width).add_(base)
        index = (ys[:, None] + xs[None]).view(4, *y0.shape)
        return index, weight, valid, frac
