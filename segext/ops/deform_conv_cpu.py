"""segext's CPU DCN v1 op: chunked bilinear sampling + GEMM.

Deformable convolution v1 (Dai et al., ICCV 2017, eq. (1)-(2); geometry in
:mod:`segext.ops.deform_geometry`). Output pixels are processed in chunks.
Per chunk, the bilinear sampling of all K = kh·kw taps (eq. (2)) builds the
chunk's columns ``(L·K, C)`` from the input's pixels as rows (channels-last)
-- segext's C++ kernel, or ``F.embedding_bag`` where it cannot be built
(:mod:`segext.ops.deform_sampling`) -- and the sum over taps (eq. (1)) is
ONE GEMM of those columns with the weight. The backward is
a hand-written :class:`torch.autograd.Function`: it recomputes each chunk's
columns (nothing of size K·C·H·W is kept between forward and backward),
gets the weight and column gradients from two GEMMs (for float32 on
oneDNN's matmul or MKL's sgemm, whichever is the faster kind on this CPU:
:mod:`segext.ops.onednn_matmul`), and the input and offset
gradients from the adjoint of the sampling (one pass of the C++ kernel:
per sample and neighbour a dot product -- the bilinear weight's gradient
-- and a weighted add into the input rows it read).

Memory layout: a channels-last input (``x.contiguous(memory_format=
torch.channels_last)``) is read in place and gives a channels-last output
and input gradient, so a stack of these layers (UPSNet's semantic head on
CPU) passes tensors on without layout copies; a standard-layout input is
copied to rows once per call and gets a standard-layout output, as
``F.conv2d`` does.

The boundary convention is mmcv's: a sample at (y, x) is zero when y <= -1,
y >= H, x <= -1 or x >= W (and then has no offset gradient); otherwise each of
its 4 neighbours outside the map counts as zero. Such neighbours get weight 0
and the row of the nearest pixel of the map.

Parallelism is over chunks, not inside ops (:mod:`segext.ops.chunk_threads`):
worker threads, kept between calls, each run whole chunks on one intra-op
thread of their own; a call with a single chunk runs in the calling thread
with torch's threads (:func:`_plan`). torch's thread settings are not
changed. The backward sums the chunks' overlapping gradients in chunk order,
so it is deterministic (:class:`~segext.ops.chunk_threads.InOrderSum`).

Peak extra memory (``chunk_bytes``: default 16 MiB; ``T``: torch's intra-op
thread count):

* a channels-last copy of a standard-layout input, kept for the backward
  (none for a channels-last input);
* per worker thread, in forward: the chunk's columns (<= ``chunk_bytes``;
  on the C++ path a buffer each thread keeps for its next calls),
  its (L, O) GEMM output (and, on the PyTorch path only, sampling tables
  of < 100 bytes per sample, i.e. per output pixel, tap and deformable
  group);
* per worker thread, in backward: the columns and their gradient
  (2 × ``chunk_bytes``), the input gradient of the rows the chunk reads, and a
  weight-sized gradient (the last two wait while an earlier chunk is still
  running); the PyTorch path also a sparse sampling matrix (about 100
  bytes per sample); plus one input-sized gradient accumulator for the
  whole call.

So about ``T × 2 × chunk_bytes`` + 2 × input size at most, independent of
K·C·H·W; mmcv's kernel allocates K·C·H_out·W_out·B floats of columns per
call.
"""
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair

from .chunk_threads import InOrderSum, map_chunks, num_workers
from .deform_geometry import DeformGeometry
from .deform_sampling import (chunk_sampling, native_sampling_available,
                              quiet_csr_warning)
from .onednn_matmul import gemm_nt, gemm_tn, mm_nt

__all__ = [
    'CPU_DTYPES', 'DEFAULT_CHUNK_BYTES', 'DeformConv2dCPUFunction',
    'deform_conv2d_cpu'
]

# <= 32 MiB, see docs/deform_conv.md ("Memory bound") for why 16 MiB
DEFAULT_CHUNK_BYTES = 16 * 2**20
CPU_DTYPES = (torch.float32, torch.float64)
# below this many bytes a layout copy is not split into bands for threads
MIN_SPLIT_BYTES = 4 * 2**20

IntPair = Union[int, Tuple[int, int]]


def _is_channels_last(tensor: Tensor) -> bool:
    """Laid out (B, H, W, C) in memory (and not also plain contiguous)?"""
    return (tensor.is_contiguous(memory_format=torch.channels_last)
            and not tensor.is_contiguous())


def _input_rows(input: Tensor, geo: DeformGeometry,
                workers: int) -> List[Tensor]:
    """(B, C, H, W) -> per piece (B*H*W, Cp): pixels as rows.

    A channels-last input of one piece is its own table (a view, no copy);
    otherwise the pieces are copied out, in bands of rows on the workers.
    """
    if len(geo.pieces) == 1 and _is_channels_last(input):
        return [input.permute(0, 2, 3, 1).reshape(-1, geo.channels)]
    rows = [
        input.new_empty(geo.batch * geo.height * geo.width, c1 - c0)
        for c0, c1, _, _ in geo.pieces
    ]

    def run(bands):
        for y0, y1 in bands:
            for (c0, c1, _, _), piece in zip(geo.pieces, rows):
                piece.view(geo.batch, geo.height, geo.width,
                           c1 - c0)[:, y0:y1].copy_(input[:, c0:c1,
                                                          y0:y1].permute(
                                                              0, 2, 3, 1))

    map_chunks(run, _bands(geo.height, workers, _nbytes(input)), workers)
    return rows


def _rows_to_input(rows: List[Tensor], geo: DeformGeometry,
                   channels_last: bool) -> Tensor:
    """Inverse of :func:`_input_rows`: (B, C, H, W) in the input's layout.

    One piece in channels-last is a view; otherwise each (image, piece) is
    one 2D transpose, which torch does in cache-sized blocks (several times
    faster than a permuted copy of the 4D tensor).
    """
    shape = (geo.batch, geo.height, geo.width, geo.channels)
    if len(rows) == 1 and channels_last:
        return rows[0].view(shape).permute(0, 3, 1, 2)
    if channels_last:
        out = rows[0].new_empty(shape)
        for (c0, c1, _, _), piece in zip(geo.pieces, rows):
            out[..., c0:c1] = piece.view(*shape[:3], c1 - c0)
        return out.permute(0, 3, 1, 2)
    out = rows[0].new_empty(geo.batch, geo.channels, geo.height, geo.width)
    pixels = geo.height * geo.width
    for n in range(geo.batch):
        for (c0, c1, _, _), piece in zip(geo.pieces, rows):
            out[n, c0:c1].view(c1 - c0, pixels).copy_(
                piece[n * pixels:(n + 1) * pixels].t())
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


def _grid(geo: DeformGeometry, dtype: torch.dtype,
          native: bool) -> Optional[Tensor]:
    """The regular grid (2, K, Ho*Wo) the PyTorch sampling path needs; the
    C++ kernels compute it on the fly (None)."""
    return None if native else geo.regular_grid(dtype)


def _forward_gemm(cols: Tensor, w_piece: Tensor,
                  bias: Optional[Tensor]) -> Tensor:
    """``cols @ w_piece.T (+ bias)``, (L, K*Cp) @ (K*Cp, O/g): eq. (1).

    :func:`~.onednn_matmul.gemm_nt`: MKL on AVX2 CPUs, where with one
    thread per worker (:mod:`.chunk_threads`) it was as fast or faster on
    the layers of UPSNet's head (docs/deform_conv.md, "Eighth round"),
    oneDNN on AVX-512 ones ("Tenth round").
    """
    return gemm_nt(cols, w_piece, bias)


def _plan(geo: DeformGeometry, chunk_bytes: int,
          itemsize: int) -> Tuple[list, int]:
    """Chunks and worker threads for one call.

    Work split into several chunks runs on :func:`num_workers` workers with
    one intra-op thread each (:func:`~segext.ops.chunk_threads.map_chunks`);
    a single chunk (a map whose columns fit one ``chunk_bytes``) runs in
    the calling thread and keeps torch's threads for its copies and its GEMM.
    """
    workers = num_workers()
    chunks = geo.chunks(chunk_bytes, itemsize, workers)
    return chunks, 1 if len(chunks) == 1 else workers


class DeformConv2dCPUFunction(torch.autograd.Function):
    """segext's CPU DCN v1: chunked bilinear sampling + GEMM.

    Parallelism is over chunks: as many worker threads as torch's intra-op
    thread count, each running whole chunks (sampling, GEMM)
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
        channels_last = _is_channels_last(input)
        geo.offset_planes(offset)  # checks the shape
        native = native_sampling_available()
        grid = _grid(geo, input.dtype, native)
        rows = _input_rows(input, geo, workers)  # [(B*H*W, Cp)]
        out = _Output(input, geo, channels_last)
        weights = _weight_pieces(weight, geo)  # [(O/g, K*Cp)]
        og = geo.out_per_group

        def run(chunks):
            for n, p0, p1 in chunks:
                sampling = chunk_sampling(geo, offset, grid, n, p0, p1,
                                          native)
                written = set()
                for (c0, c1, g, d), x_rows, w_piece in zip(
                        geo.pieces, rows, weights):
                    cols = sampling.columns(d, x_rows)  # (L*K, Cp)
                    b_piece = None if bias is None or g in written \
                        else bias[g * og:(g + 1) * og]
                    # (L, O/g) = (L, K*Cp) @ (K*Cp, O/g), eq. (1)
                    y = _forward_gemm(cols.view(p1 - p0, -1), w_piece,
                                      b_piece)
                    out.write(n, p0, p1, g, y, add=g in written)
                    written.add(g)

        map_chunks(run, chunks, workers)
        ctx.geo = geo
        ctx.chunk_bytes = chunk_bytes
        ctx.has_bias = bias is not None
        ctx.channels_last = channels_last
        ctx.save_for_backward(offset, weight, *rows)
        return out.tensor

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):
        chunks, workers = _plan(ctx.geo, ctx.chunk_bytes,
                                grad_output.element_size())
        if ctx.needs_input_grad[0] and not native_sampling_available():
            quiet_csr_warning()
        grads = DeformConv2dCPUFunction._backward(ctx, grad_output, chunks,
                                                  workers)
        return grads + (None, ) * 6

    @staticmethod
    def _backward(ctx, grad_output: Tensor, chunks: list, workers: int):
        geo = ctx.geo
        offset, weight, *rows = ctx.saved_tensors
        need_input, need_offset, need_weight, need_bias = \
            ctx.needs_input_grad[:4]
        og = geo.out_per_group
        native = native_sampling_available()
        grid = _grid(geo, grad_output.dtype, native)
        weights = _weight_pieces(weight, geo)  # [(O/g, K*Cp)]
        weights_t = [w.t().contiguous() for w in weights]  # [(K*Cp, O/g)]
        grad_out = _GradOutput(grad_output, geo)
        grad_rows = [torch.zeros_like(r) for r in rows] if need_input \
            else None
        grad_weights = [torch.zeros_like(w) for w in weights] \
            if need_weight else None
        # chunks overlap in the input rows they read and all add into the
        # weight gradient: summed in chunk order, whichever worker ran them
        accumulate = InOrderSum(grad_rows, grad_weights)
        # zeros: pieces sharing a deformable group add into it
        grad_offset = torch.zeros_like(
            offset, memory_format=torch.contiguous_format) \
            if need_offset else None

        def run(chunks):
            for chunk_id, (n, p0, p1) in chunks:
                length = p1 - p0
                chunk_weights = [None] * len(weights)  # [(O/g, K*Cp)]
                chunk_rows = []  # [(piece, first row, (rows, Cp))]
                sampling = chunk_sampling(geo, offset, grid, n, p0, p1,
                                          native, for_backward=need_offset)
                for i, ((c0, c1, g, d), x_rows,
                        w_piece_t) in enumerate(zip(geo.pieces, rows,
                                                    weights_t)):
                    g_out = grad_out.rows(n, p0, p1, g)  # (L, O/g)
                    # recomputed: nothing K*C*H*W-sized is kept from forward
                    cols = sampling.columns(d, x_rows)  # (L*K, Cp)
                    if need_weight:
                        # (O/g, K*Cp) = (O/g, L) @ (L, K*Cp): MKL on AVX2
                        # CPUs, where oneDNN's reordering of the columns
                        # cost more than it gained (docs/deform_conv.md,
                        # "Seventh round"), oneDNN on AVX-512 ones
                        chunk_weights[i] = gemm_tn(g_out,
                                                   cols.view(length, -1))
                    if not (need_input or need_offset):
                        continue
                    # (L, K*Cp) = (L, O/g) @ (O/g, K*Cp)
                    grad_cols = mm_nt(g_out, w_piece_t).view_as(cols)
                    row_grad = sampling.backward(d, x_rows, grad_cols,
                                                 need_input, grad_offset)
                    if row_grad is not None:
                        chunk_rows.append((i, *row_grad))
                    del cols, grad_cols
                sampling.finish(grad_offset)
                accumulate(chunk_id, chunk_weights, chunk_rows)

        map_chunks(run, list(enumerate(chunks)), workers)
        accumulate.check_done(len(chunks))

        grad_input = grad_weight = grad_bias = None
        if need_input:
            grad_input = _rows_to_input(grad_rows, geo, ctx.channels_last)
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


class _Output:
    """The op's output in the input's memory format, written per chunk.

    Channels-last: each chunk's GEMM output (channels-last itself) is
    copied into its rows of pixels; otherwise into the channel planes.
    """

    def __init__(self, input: Tensor, geo: DeformGeometry,
                 channels_last: bool) -> None:
        self.geo, self.channels_last = geo, channels_last
        if channels_last:
            # allocated channels-last (an output that is a view of another
            # tensor could not be modified in place, e.g. by ReLU)
            self.tensor = torch.empty(
                geo.batch, geo.out_channels, geo.out_h, geo.out_w,
                dtype=input.dtype, memory_format=torch.channels_last)
            self.rows = self.tensor.permute(0, 2, 3,
                                            1).view(-1, geo.out_channels)
        else:
            self.tensor = input.new_empty(geo.batch, geo.out_channels,
                                          geo.out_h, geo.out_w)
            self.planes = self.tensor.view(geo.batch, geo.out_channels,
                                           geo.out_pixels)

    def write(self, n: int, p0: int, p1: int, g: int, y: Tensor,
              add: bool) -> None:
        """Write (or add) ``y`` (L, O/g) into the output pixels p0..p1 of
        image n, channels of group g."""
        og = self.geo.out_per_group
        if self.channels_last:
            first = n * self.geo.out_pixels
            dst = self.rows[first + p0:first + p1, g * og:(g + 1) * og]
        else:
            dst = self.planes[n, g * og:(g + 1) * og, p0:p1].t()
        if add:
            dst += y
        else:
            dst.copy_(y)


class _GradOutput:
    """(L, O/g) views of the output gradient per chunk and group, in
    whichever layout it arrives (channels-last: rows of pixels)."""

    def __init__(self, grad_output: Tensor, geo: DeformGeometry) -> None:
        self.geo = geo
        self.channels_last = _is_channels_last(grad_output)
        if self.channels_last:
            self.data = grad_output.permute(0, 2, 3, 1).reshape(
                -1, geo.out_channels)
        else:
            self.data = grad_output.contiguous().view(
                geo.batch, geo.out_channels, geo.out_pixels)

    def rows(self, n: int, p0: int, p1: int, g: int) -> Tensor:
        og = self.geo.out_per_group
        if self.channels_last:
            first = n * self.geo.out_pixels
            return self.data[first + p0:first + p1, g * og:(g + 1) * og]
        return self.data[n, g * og:(g + 1) * og, p0:p1].t()


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
    if not _is_channels_last(input):
        input = input.contiguous()
    return DeformConv2dCPUFunction.apply(input,
                                         offset.contiguous(), weight, bias,
                                         _pair(stride), _pair(padding),
                                         _pair(dilation), groups,
                                         deform_groups, int(chunk_bytes))
