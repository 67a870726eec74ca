"""segext's CPU DCN v1 op: chunked gather (``embedding_bag``) + GEMM.

Deformable convolution v1 (Dai et al., ICCV 2017, eq. (1)-(2); geometry and
sampling tables in :mod:`segext.ops.deform_geometry`) built from PyTorch
ops. Output pixels are processed in chunks. Per chunk, the bilinear sampling
of all K = kh·kw taps (eq. (2)) is ONE ``F.embedding_bag`` call — every
sample is a bag of its 4 neighbours, gathered from a channels-last copy of
the input (pixels as rows), with the bilinear weights as
``per_sample_weights`` — and the sum over taps (eq. (1)) is ONE GEMM of those
columns with the weight, run by oneDNN as a kh×kw conv with stride (kh, kw)
over the columns laid out as a (kh, L·kw) image. The backward is a
hand-written :class:`torch.autograd.Function`: it recomputes each chunk's
columns (nothing of size K·C·H·W is kept between forward and backward), gets
the weight and column gradients from two GEMMs, the input and
bilinear-weight gradients from ``embedding_bag``'s backward, and the offset
gradients from the derivatives of the bilinear weights.

The boundary convention is mmcv's: a sample at (y, x) is zero when y <= -1,
y >= H, x <= -1 or x >= W (and then has no offset gradient); otherwise each of
its 4 neighbours outside the map counts as zero. Such neighbours read an extra
all-zero row of the channels-last input with weight 0.

Parallelism is over chunks, not inside ops (:mod:`segext.ops.chunk_threads`):
worker threads, kept between calls, each run whole chunks on one intra-op
thread of their own; a call with a single chunk runs in the calling thread
with torch's threads (:func:`_plan`). torch's thread settings are not
changed. The backward sums the chunks' overlapping gradients in chunk order,
so it is deterministic (:class:`~segext.ops.chunk_threads.InOrderSum`).

Peak extra memory (``chunk_bytes``: default 16 MiB; ``T``: torch's intra-op
thread count):

* a channels-last copy of the input, kept for the backward (+1 zero row);
* per worker thread, in forward: the chunk's columns (<= ``chunk_bytes``),
  its (O, L) GEMM output and sampling tables (< 100 bytes per sample, i.e.
  per output pixel, tap and deformable group);
* per worker thread, in backward: the columns and their gradient
  (2 × ``chunk_bytes``), ``embedding_bag``'s input gradient for the rows the
  chunk reads, and a weight-sized gradient (the last two wait while an
  earlier chunk is still running); plus one input-sized gradient
  accumulator for the whole call.

So about ``T × 2 × chunk_bytes`` + 2 × input size at most, independent of
K·C·H·W; mmcv's kernel allocates K·C·H_out·W_out·B floats of columns per
call.
"""
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair

from .chunk_threads import InOrderSum, map_chunks, num_workers
from .deform_geometry import MIN_SPLIT_BYTES, DeformGeometry

__all__ = [
    'CPU_DTYPES', 'DEFAULT_CHUNK_BYTES', 'DeformConv2dCPUFunction',
    'deform_conv2d_cpu'
]

# <= 32 MiB, see docs/deform_conv.md ("Memory bound") for why 16 MiB
DEFAULT_CHUNK_BYTES = 16 * 2**20
CPU_DTYPES = (torch.float32, torch.float64)

IntPair = Union[int, Tuple[int, int]]


def _channels_last_rows(input: Tensor, geo: DeformGeometry,
                        workers: int) -> List[Tensor]:
    """(B, C, H, W) -> per piece (1 + B*H*W, Cp), row 0 all zero."""
    rows = [
        input.new_empty(1 + geo.batch * geo.height * geo.width, c1 - c0)
        for c0, c1, _, _ in geo.pieces
    ]

    def run(bands):
        for y0, y1 in bands:
            for (c0, c1, _, _), piece in zip(geo.pieces, rows):
                piece[1:].view(geo.batch, geo.height, geo.width,
                               c1 - c0)[:, y0:y1].copy_(input[:, c0:c1,
                                                              y0:y1].permute(
                                                                  0, 2, 3, 1))

    map_chunks(run, _bands(geo.height, workers, _nbytes(input)), workers)
    for piece in rows:
        piece[0].zero_()
    return rows


def _from_channels_last_rows(rows: List[Tensor], geo: DeformGeometry,
                             workers: int) -> Tensor:
    """Inverse of :func:`_channels_last_rows` (drops the zero row)."""
    out = rows[0].new_empty(geo.batch, geo.channels, geo.height, geo.width)

    def run(bands):
        for y0, y1 in bands:
            for (c0, c1, _, _), piece in zip(geo.pieces, rows):
                out[:, c0:c1,
                    y0:y1] = piece[1:].view(geo.batch, geo.height, geo.width,
                                            c1 - c0)[:, y0:y1].permute(
                                                0, 3, 1, 2)

    map_chunks(run, _bands(geo.height, workers, _nbytes(out)), workers)
    return out


def _bands(height: int, workers: int, nbytes: int) -> List[Tuple[int, int]]:
    """Split ``height`` rows into ``workers`` bands for a layout copy of
    ``nbytes`` (one band when the copy is too small to be worth a thread).
    """
    if nbytes < MIN_SPLIT_BYTES:
        workers = 1
    step = -(-height // workers)
    return [(y0, min(y0 + step, height)) for y0 in range(0, height, step)]


def _nbytes(tensor: Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _weight_pieces(weight: Tensor, geo: DeformGeometry) -> List[Tensor]:
    """(O, C/g, kh, kw) -> per piece (O/g, K*Cp), columns ordered (tap, c)."""
    pieces = []
    for c0, c1, g, _ in geo.pieces:
        block = weight[g * geo.out_per_group:(g + 1) * geo.out_per_group,
                       c0 - g * geo.in_per_group:c1 - g * geo.in_per_group]
        pieces.append(block.permute(0, 2, 3, 1).reshape(geo.out_per_group, -1))
    return pieces


def _sample(index: Tensor, weight: Tensor, rows: Tensor) -> Tensor:
    """Columns (S, Cp): each sample the weighted sum of its 4 rows."""
    return F.embedding_bag(index, rows, per_sample_weights=weight, mode='sum')


def _plan(geo: DeformGeometry, chunk_bytes: int,
          itemsize: int) -> Tuple[list, int]:
    """Chunks and worker threads for one call.

    Work split into several chunks runs on :func:`num_workers` workers with
    one intra-op thread each (:func:`~segext.ops.chunk_threads.map_chunks`);
    a single chunk (a small map: < ``MIN_SPLIT_BYTES`` of columns) runs in
    the calling thread and keeps torch's threads for its copies and its GEMM.
    """
    workers = num_workers()
    chunks = geo.chunks(chunk_bytes, itemsize, workers)
    return chunks, 1 if len(chunks) == 1 else workers


class DeformConv2dCPUFunction(torch.autograd.Function):
    """segext's CPU DCN v1: chunked gather (``embedding_bag``) + GEMM.

    Parallelism is over chunks: as many worker threads as torch's intra-op
    thread count, each running whole chunks (sampling tables, gather, GEMM)
    on a single intra-op thread of its own
    (:func:`~segext.ops.chunk_threads.map_chunks`); one chunk runs in the
    calling thread (:func:`_plan`).
    """

    @staticmethod
    def forward(ctx, input: Tensor, offset: Tensor, weight: Tensor,
                bias: Optional[Tensor], stride: Tuple[int, int],
                padding: Tuple[int, int], dilation: Tuple[int, int],
                groups: int, deform_groups: int, chunk_bytes: int) -> Tensor:
        geo = DeformGeometry(input, weight, stride, padding, dilation, groups,
                             deform_groups)
        chunks, workers = _plan(geo, chunk_bytes, input.element_size())
        offsets = geo.offset_planes(offset)  # (B, dg, K, 2, Ho*Wo)
        grid = geo.regular_grid(input.dtype)  # (2, K, Ho*Wo)
        # [(1 + B*H*W, Cp)]
        rows = _channels_last_rows(input, geo, workers)
        out = input.new_empty(geo.batch, geo.out_channels, geo.out_h,
                              geo.out_w)
        out_rows = out.view(geo.batch, geo.out_channels, geo.out_pixels)
        kh, kw = geo.kernel
        og = geo.out_per_group

        def run(chunks):
            for n, p0, p1 in chunks:
                length = p1 - p0
                # (4, dg, K, L) each
                index, bilinear, _ = geo.bilinear(offsets, grid, n, p0, p1)
                # order the samples (tap row, pixel, tap col), the 4
                # neighbours innermost: the columns then form a
                # (kh, L*kw) image and the GEMM is a kh×kw conv with
                # stride (kh, kw) -> (1, L), which oneDNN runs faster
                # than a plain GEMM of that shape
                index = index.view(4, geo.deform_groups, kh, kw,
                                   length).permute(1, 2, 4, 3, 0).contiguous()
                bilinear = bilinear.view(4, geo.deform_groups, kh, kw,
                                         length).permute(1, 2, 4, 3,
                                                         0).contiguous()
                written = set()
                for (c0, c1, g, d), x_rows in zip(geo.pieces, rows):
                    cols = _sample(index[d].view(-1,
                                                 4), bilinear[d].view(-1, 4),
                                   x_rows)  # (kh*L*kw, Cp)
                    image = cols.view(1, kh, length * kw,
                                      c1 - c0).permute(0, 3, 1, 2)
                    # (O/g, Cp, kh, kw)
                    w_piece = weight[g * og:(g + 1) * og,
                                     c0 - g * geo.in_per_group:c1 -
                                     g * geo.in_per_group]
                    b_piece = None if bias is None or g in written \
                        else bias[g * og:(g + 1) * og]
                    # (1, O/g, 1, L)
                    y = F.conv2d(image, w_piece, b_piece, stride=(kh, kw))
                    dst = out_rows[n, g * og:(g + 1) * og, p0:p1]
                    if g in written:
                        dst += y[0, :, 0]
                    else:
                        dst.copy_(y[0, :, 0])
                    written.add(g)

        map_chunks(run, chunks, workers)
        ctx.geo = geo
        ctx.chunk_bytes = chunk_bytes
        ctx.has_bias = bias is not None
        ctx.save_for_backward(offset, weight, *rows)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):
        chunks, workers = _plan(ctx.geo, ctx.chunk_bytes,
                                grad_output.element_size())
        grads = DeformConv2dCPUFunction._backward(ctx, grad_output, chunks,
                                                  workers)
        return grads + (None, ) * 6

    @staticmethod
    def _backward(ctx, grad_output: Tensor, chunks: list, workers: int):
        geo = ctx.geo
        offset, weight, *rows = ctx.saved_tensors
        need_input, need_offset, need_weight, need_bias = \
            ctx.needs_input_grad[:4]
        need_samples = need_input or need_offset
        og = geo.out_per_group
        offsets = geo.offset_planes(offset)  # (B, dg, K, 2, Ho*Wo)
        grid = geo.regular_grid(grad_output.dtype)  # (2, K, Ho*Wo)
        weights = _weight_pieces(weight, geo)  # [(O/g, K*Cp)]
        grad_out = grad_output.contiguous().view(geo.batch, geo.out_channels,
                                                 geo.out_pixels)
        grad_rows = None
        if need_input:
            grad_rows = [torch.empty_like(r) for r in rows]

            def zero(bands):
                for r0, r1 in bands:
                    for g_rows in grad_rows:
                        g_rows[r0:r1].zero_()

            map_chunks(
                zero,
                _bands(grad_rows[0].size(0), workers,
                       sum(_nbytes(g) for g in grad_rows)), workers)
        grad_weights = [torch.zeros_like(w) for w in weights] \
            if need_weight else None
        # chunks overlap in the input rows they read and all add into the
        # weight gradient: summed in chunk order, whichever worker ran them
        accumulate = InOrderSum(grad_rows, grad_weights)
        grad_offset = torch.empty_like(offset) if need_offset else None
        grad_offsets = geo.offset_planes(grad_offset) if need_offset \
            else None

        def run(chunks):
            for chunk_id, (n, p0, p1) in chunks:
                length = p1 - p0
                chunk_weights = [None] * len(weights)  # [(O/g, K*Cp)]
                chunk_rows = []  # [(piece, first row, (rows, Cp))]
                index, bilinear, frac = geo.bilinear(offsets, grid, n, p0, p1)
                # samples ordered (pixel, tap), the 4 neighbours innermost
                index = index.permute(1, 3, 2, 0).contiguous()
                bilinear = bilinear.permute(1, 3, 2, 0).contiguous()
                # (dg, L, K, 4) each
                grad_bilinear = torch.zeros_like(bilinear) if need_offset \
                    else None
                for i, ((c0, c1, g, d), x_rows,
                        w_piece) in enumerate(zip(geo.pieces, rows, weights)):
                    # (O/g, L)
                    g_out = grad_out[n, g * og:(g + 1) * og, p0:p1]
                    idx = index[d].view(-1, 4)  # (L*K, 4)
                    bil = bilinear[d].view(-1, 4)
                    if not need_samples:
                        cols = _sample(idx, bil, x_rows).view(length, -1)
                        # (O/g, K*Cp) = (O/g, L) @ (L, K*Cp)
                        chunk_weights[i] = torch.mm(g_out, cols)
                        continue
                    hi = int(idx.max())
                    if hi == 0:
                        continue  # every sample of the chunk reads zeros
                    # only rows [lo-1, hi] are read: gather from those, so
                    # that embedding_bag's dense input gradient is
                    # chunk-sized; neighbours that count as zero go to local
                    # row 0 with weight 0
                    lo = int(torch.where(idx > 0, idx, hi).min())
                    local = (idx - (lo - 1)).clamp_(min=0)
                    x_leaf = x_rows[lo - 1:hi + 1].detach()
                    x_leaf.requires_grad_(need_input)
                    b_leaf = bil.detach().requires_grad_(need_offset)
                    with torch.enable_grad():
                        cols = _sample(local, b_leaf, x_leaf)  # (L*K, Cp)
                    if need_weight:
                        chunk_weights[i] = torch.mm(
                            g_out,
                            cols.detach().view(length, -1))
                    # (L, K*Cp) = (L, O/g) @ (O/g, K*Cp)
                    grad_cols = torch.mm(g_out.t(), w_piece)
                    leaves = [t for t in (x_leaf, b_leaf) if t.requires_grad]
                    sample_grads = list(
                        torch.autograd.grad(cols, leaves,
                                            grad_cols.view_as(cols)))
                    del cols, grad_cols
                    if need_input:
                        chunk_rows.append((i, lo - 1, sample_grads[0]))
                    if need_offset:
                        grad_bilinear[d] += sample_grads[-1].view(
                            length, geo.taps, 4)
                if need_offset:
                    # derivatives of (1-ly, ly) ⊗ (1-lx, lx) w.r.t. (y, x);
                    # neighbours that count as zero have no gradient
                    grad_bilinear.masked_fill_(index == 0, 0)
                    # (4, dg, K, L)
                    gb = grad_bilinear.permute(3, 0, 2, 1).contiguous()
                    ly, lx = frac  # (dg, K, L)
                    grad_offsets[n, ..., 0, p0:p1] = \
                        (gb[2] - gb[0]) * (1 - lx) + (gb[3] - gb[1]) * lx
                    grad_offsets[n, ..., 1, p0:p1] = \
                        (gb[1] - gb[0]) * (1 - ly) + (gb[3] - gb[2]) * ly
                accumulate(chunk_id, chunk_weights, chunk_rows)

        map_chunks(run, list(enumerate(chunks)), workers)
        accumulate.check_done(len(chunks))

        grad_input = grad_weight = grad_bias = None
        if need_input:
            grad_input = _from_channels_last_rows(grad_rows, geo, workers)
        if need_weight:
            grad_weight = torch.empty_like(weight)
            for i, (c0, c1, g, _) in enumerate(geo.pieces):
                g_w = grad_weights[i]  # (O/g, K*Cp)
                grad_weight[g * og:(g + 1) * og, c0 - g * geo.in_per_group:c1 -
                            g * geo.in_per_group] = g_w.view(
                                og, *geo.kernel, c1 - c0).permute(0, 3, 1, 2)
        if need_bias and ctx.has_bias:
            grad_bias = grad_output.sum((0, 2, 3))
        return grad_input, grad_offset, grad_weight, grad_bias


def deform_conv2d_cpu(input: Tensor,
                      offset: Tensor,
                      weight: Tensor,
                      bias: Optional[Tensor] = None,
                      stride: IntPair = 1,
                      padding: IntPair = 0,
                      dilation: IntPair = 1,
                      groups: int = 1,
                      deform_groups: int = 1,
                      chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Tensor:
    """segext's CPU DCN v1; arguments as :func:`deform_conv2d`.

    ``chunk_bytes`` bounds the columns built at once (one chunk of output
    pixels × K×K taps × the channels of one group); see the module docstring
    for the resulting peak memory.
    """
    if input.dim() != 4:
        raise ValueError(f'expected a 4D input (B, C, H, W), got '
                         f'{input.dim()}D')
    if input.device.type != 'cpu':
        raise ValueError(f'deform_conv2d_cpu needs CPU tensors, got '
                         f'{input.device}')
    channels = input.size(1)
    if channels % groups or channels % deform_groups or \
            weight.size(0) % groups:
        raise ValueError(
            f'in_channels {channels} must be divisible by groups {groups} '
            f'and deform_groups {deform_groups}, out_channels '
            f'{weight.size(0)} by groups')
    if weight.size(1) * groups != channels:
        raise ValueError(f'weight of shape {tuple(weight.shape)} expects '
                         f'{weight.size(1) * groups} input channels with '
                         f'groups={groups}, got {channels}')
    # mmcv's amp convention: the offset's dtype decides
    input = input.type_as(offset)
    if input.dtype not in CPU_DTYPES:
        raise TypeError(f'deform_conv2d_cpu supports {CPU_DTYPES}, got '
                        f'{input.dtype} (impl="mmcv" takes other dtypes)')
    weight = weight.type_as(input)
    if bias is not None:
        bias = bias.type_as(input)
    return DeformConv2dCPUFunction.apply(input.contiguous(),
                                         offset.contiguous(), weight, bias,
                                         _pair(stride), _pair(padding),
                                         _pair(dilation), groups,
                                         deform_groups, int(chunk_bytes))
