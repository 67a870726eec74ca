"""Deformable convolution v1 with a fast CPU path chosen at run time.

DCN v1 (Dai et al., "Deformable Convolutional Networks", ICCV 2017) samples
the input at the regular grid positions of a kh×kw kernel shifted by learned,
fractional offsets (eq. (1)-(2)):

    y(p0) = sum_k w(p_k) · x(p0 + p_k + Δp_k),
    x(p)  = sum_q G(q, p) · x(q),   G(q, p) = g(q_y, p_y) · g(q_x, p_x),
    g(a, b) = max(0, 1 - |a - b|)          (bilinear interpolation).

UPSNet (Xiong et al. 2019, Sec. 3.1) uses it in its semantic head, with a bias
and a zero-initialised offset conv so that training starts from a plain conv.

Two implementations sit behind :func:`deform_conv2d`:

* ``'mmcv'``: mmcv's compiled kernel (``mmcv.ops.deform_conv2d``), always used
  on CUDA and any other non-CPU device, so GPU users get upstream's op.
* ``'segext'``: the CPU path of this module, built from PyTorch ops. Output
  pixels are processed in chunks. Per chunk, the bilinear sampling of all
  K = kh·kw taps (eq. (2)) is ONE ``F.embedding_bag`` call — every sample is
  a bag of its 4 neighbours, gathered from a channels-last copy of the input
  (pixels as rows), with the bilinear weights as ``per_sample_weights`` — and
  the sum over taps (eq. (1)) is ONE GEMM of those columns with the weight,
  run by oneDNN as a kh×kw conv with stride (kh, kw) over the columns laid
  out as a (kh, L·kw) image. The backward is a hand-written
  :class:`torch.autograd.Function`: it recomputes each chunk's columns
  (nothing of size K·C·H·W is kept between forward and backward), gets the
  weight and column gradients from two GEMMs, the input and bilinear-weight
  gradients from ``embedding_bag``'s backward, and the offset gradients from
  the derivatives of the bilinear weights.

The boundary convention is mmcv's: a sample at (y, x) is zero when y <= -1,
y >= H, x <= -1 or x >= W (and then has no offset gradient); otherwise each of
its 4 neighbours outside the map counts as zero. Such neighbours read an extra
all-zero row of the channels-last input with weight 0.

Parallelism is over chunks, not inside ops: ``torch.get_num_threads()``
worker threads (kept between calls) each run whole chunks on one intra-op
thread (see :func:`_map_chunks`); a call with a single chunk runs in the
calling thread with torch's threads (:func:`_plan`). The backward sums the
chunks' overlapping gradients in chunk order, so it is deterministic
(:class:`_InOrderSum`).

Peak extra memory of the CPU path (``chunk_bytes``: default 16 MiB; ``T``:
torch's intra-op thread count):

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
call (560 MB for 256 channels on a 200×304 map).
"""
import contextlib
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.ops import deform_conv2d as mmcv_deform_conv2d
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair

__all__ = [
    'DEFAULT_CHUNK_BYTES', 'deform_conv2d', 'deform_conv2d_cpu',
    'deform_conv_impl', 'select_deform_conv_impl', 'DeformConv2dWithOffset'
]

IMPLS = ('auto', 'mmcv', 'segext')
# <= 32 MiB: glibc's malloc recycles blocks up to that size instead of
# mapping fresh pages for every chunk; 2 workers' columns then also fit a
# 32 MiB L3 between the gather that writes them and the GEMM that reads them
DEFAULT_CHUNK_BYTES = 16 * 2**20
# below this many bytes of columns a chunk is not split further for threads
_MIN_SPLIT_BYTES = 4 * 2**20
_CPU_DTYPES = (torch.float32, torch.float64)
_forced_impl = 'auto'

IntPair = Union[int, Tuple[int, int]]


def _check_impl(impl: str) -> None:
    if impl not in IMPLS:
        raise ValueError(f'impl must be one of {IMPLS}, got {impl!r}')


@contextlib.contextmanager
def deform_conv_impl(impl: str):
    """Force the implementation of every ``impl='auto'`` deformable conv.

    ``with deform_conv_impl('mmcv'): model(x)`` runs mmcv's kernel even on
    CPU; ``'segext'`` forces segext's CPU path (it still needs CPU tensors);
    ``'auto'`` restores the default choice. Calls that name an ``impl`` other
    than ``'auto'`` explicitly are not affected.
    """
    global _forced_impl
    _check_impl(impl)
    previous, _forced_impl = _forced_impl, impl
    try:
        yield
    finally:
        _forced_impl = previous


def select_deform_conv_impl(input: Tensor, impl: str = 'auto') -> str:
    """Name the implementation :func:`deform_conv2d` runs for ``input``.

    ``'auto'`` (after the :func:`deform_conv_impl` override) is segext's path
    for float32/float64 CPU tensors and mmcv's kernel for anything else
    (CUDA and other devices, half precision).
    """
    _check_impl(impl)
    if impl == 'auto':
        impl = _forced_impl
    if impl == 'auto':
        on_cpu = input.device.type == 'cpu'
        impl = 'segext' if on_cpu and input.dtype in _CPU_DTYPES else 'mmcv'
    if impl == 'segext' and input.device.type != 'cpu':
        raise ValueError('the segext deformable conv runs on CPU tensors '
                         f'only, got a tensor on {input.device}')
    return impl


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
                  | {g * per_group for g in range(groups)}
                  | {d * per_deform_group for d in range(deform_groups)})
    return [(c0, c1, c0 // per_group, c0 // per_deform_group)
            for c0, c1 in zip(cuts[:-1], cuts[1:])]


class _Geometry:
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

        Each chunk's columns (one piece) take at most ``chunk_bytes``; work
        worth splitting (>= ``_MIN_SPLIT_BYTES`` of columns) gets a multiple
        of ``workers`` chunks of equal size.
        """
        widest = max(c1 - c0 for c0, c1, _, _ in self.pieces)
        per_pixel = self.taps * widest * itemsize
        pixels = self.batch * self.out_pixels
        count = -(-pixels * per_pixel // chunk_bytes)
        if pixels * per_pixel >= _MIN_SPLIT_BYTES:
            # a multiple of the workers, so that they finish together
            count = -(-max(count, workers) // workers) * workers
        step = min(-(-pixels // count), max(1, chunk_bytes // per_pixel),
                   self.out_pixels)
        return [(n, p0, min(p0 + step, self.out_pixels))
                for n in range(self.batch)
                for p0 in range(0, self.out_pixels, step)]

    def offset_planes(self, offset: Tensor) -> Tensor:
        """(B, dg*K*2, Ho, Wo) -> (B, dg, K, 2, Ho*Wo) view.

        mmcv's layout: per deformable group, per tap (row-major), (dy, dx).
        """
        expected = (self.batch, self.deform_groups * self.taps * 2,
                    self.out_h, self.out_w)
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
        return torch.stack([grid_y, grid_x]).to(dtype).view(
            2, self.taps, self.out_pixels)

    def bilinear(self, offsets: Tensor, grid: Tensor, n: int, p0: int,
                 p1: int):
        """Neighbours and bilinear weights of the samples of one chunk.

        Eq. (2) with mmcv's boundary convention: a sample at (y, x) outside
        (-1, H) × (-1, W) is zero, otherwise each of its neighbours (y0, x0),
        (y0, x0+1), (y0+1, x0), (y0+1, x0+1) outside the map counts as zero.
        Computed in planes (pixels innermost) so every op is a long
        contiguous loop.

        Args:
            offsets (Tensor): (B, dg, K, 2, Ho*Wo), see offset_planes.
            grid (Tensor): (2, K, Ho*Wo), see regular_grid.

        Returns:
            index (4, dg, K, L) int32: rows of the channels-last input of
                the 4 neighbours (row 0 is all zero, pixel (n, y, x) is row
                1 + n*H*W + y*W + x); 0 for neighbours that count as zero.
            weight (4, dg, K, L): bilinear weights, 0 where index is 0.
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
        invalid = ~torch.stack(
            [row0 & col0, row0 & col1, row1 & col0, row1 & col1])
        # bilinear weights (1-ly, ly) ⊗ (1-lx, lx)
        ly, lx = frac
        hy, hx = 1 - ly, 1 - lx
        weight = torch.stack([hy * hx, hy * lx, ly * hx, ly * lx])
        weight.masked_fill_(invalid, 0)
        corner = torch.add(x0, y0, alpha=self.width).add_(
            1 + n * self.height * self.width)
        index = corner + corner.new_tensor(
            [0, 1, self.width, self.width + 1]).view(4, 1, 1, 1)
        index.masked_fill_(invalid, 0)
        return index, weight, frac


def _channels_last_rows(input: Tensor, geo: _Geometry,
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
                               c1 - c0)[:, y0:y1].copy_(
                                   input[:, c0:c1, y0:y1].permute(0, 2, 3, 1))

    _map_chunks(run, _bands(geo.height, workers, _nbytes(input)), workers)
    for piece in rows:
        piece[0].zero_()
    return rows


def _from_channels_last_rows(rows: List[Tensor], geo: _Geometry,
                             workers: int) -> Tensor:
    """Inverse of :func:`_channels_last_rows` (drops the zero row)."""
    out = rows[0].new_empty(geo.batch, geo.channels, geo.height, geo.width)

    def run(bands):
        for y0, y1 in bands:
            for (c0, c1, _, _), piece in zip(geo.pieces, rows):
                out[:, c0:c1, y0:y1] = piece[1:].view(
                    geo.batch, geo.height, geo.width,
                    c1 - c0)[:, y0:y1].permute(0, 3, 1, 2)

    _map_chunks(run, _bands(geo.height, workers, _nbytes(out)), workers)
    return out


def _bands(height: int, workers: int, nbytes: int) -> List[Tuple[int, int]]:
    """Split ``height`` rows into ``workers`` bands for a layout copy of
    ``nbytes`` (one band when the copy is too small to be worth a thread).
    """
    if nbytes < _MIN_SPLIT_BYTES:
        workers = 1
    step = -(-height // workers)
    return [(y0, min(y0 + step, height)) for y0 in range(0, height, step)]


def _nbytes(tensor: Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _weight_pieces(weight: Tensor, geo: _Geometry) -> List[Tensor]:
    """(O, C/g, kh, kw) -> per piece (O/g, K*Cp), columns ordered (tap, c)."""
    pieces = []
    for c0, c1, g, _ in geo.pieces:
        block = weight[g * geo.out_per_group:(g + 1) * geo.out_per_group,
                       c0 - g * geo.in_per_group:c1 - g * geo.in_per_group]
        pieces.append(block.permute(0, 2, 3, 1).reshape(geo.out_per_group, -1))
    return pieces


def _sample(index: Tensor, weight: Tensor, rows: Tensor) -> Tensor:
    """Columns (S, Cp): each sample the weighted sum of its 4 rows."""
    return F.embedding_bag(
        index, rows, per_sample_weights=weight, mode='sum')


@contextlib.contextmanager
def _num_threads(threads: int):
    """Set torch's intra-op thread count inside the block."""
    previous = torch.get_num_threads()
    if threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _map_chunks(run: Callable[[Iterator], object], chunks: list,
                workers: int) -> list:
    """Split ``chunks`` over ``workers`` threads, each on one intra-op thread.

    ``run`` gets an iterator that hands out chunks until none are left (so a
    worker that the OS schedules less takes fewer) and returns its partial
    results; the list of those is returned. torch ops release the GIL, so
    the workers' gathers and GEMMs run in parallel without any OpenMP
    fork/join: on a CPU shared with other jobs a descheduled OpenMP worker
    stalls every parallel region (a chunked 200×304 forward lost ~40 ms per
    GEMM call that way on this project's busy 2-core machine), while
    independent chunks just wait for their own thread.
    """
    workers = max(1, min(workers, len(chunks)))
    if workers == 1:
        with torch.no_grad():
            return [run(iter(chunks))]
    pending = iter(chunks)
    lock = threading.Lock()

    def next_chunks():
        while True:
            with lock:
                chunk = next(pending, None)
            if chunk is None:
                return
            yield chunk

    def worker():
        torch.set_num_threads(1)  # this thread's OpenMP/MKL settings
        with torch.no_grad():  # grad mode is thread-local
            return run(next_chunks())

    futures = [_pool(workers).submit(worker) for _ in range(workers)]
    return [future.result() for future in futures]


_POOL = None  # (process id, size, ThreadPoolExecutor)
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The worker threads, kept between calls (their oneDNN/MKL state too).

    Re-created in a forked child (threads do not survive ``fork``, e.g. in
    DataLoader workers) and when more workers are asked for.
    """
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < workers:
            if _POOL is not None and _POOL[0] == os.getpid():
                _POOL[2].shutdown(wait=False)
            _POOL = (os.getpid(), workers,
                     ThreadPoolExecutor(
                         workers, thread_name_prefix='segext_dcn'))
        return _POOL[2]


def _plan(geo: _Geometry, chunk_bytes: int,
          itemsize: int) -> Tuple[list, int, int]:
    """Chunks, worker threads and torch's intra-op threads for one call.

    Work split into several chunks runs on ``torch.get_num_threads()``
    workers with one intra-op thread each (:func:`_map_chunks`); a single
    chunk (a small map: < ``_MIN_SPLIT_BYTES`` of columns) runs in the
    calling thread and keeps torch's threads for its copies and its GEMM.
    """
    threads = torch.get_num_threads()
    chunks = geo.chunks(chunk_bytes, itemsize, threads)
    if len(chunks) == 1 or threads == 1:
        return chunks, 1, threads
    return chunks, threads, 1


class _InOrderSum:
    """Adds per-chunk gradient contributions in chunk order.

    Worker threads take chunks dynamically, so which thread sums what (and
    when) varies from call to call; float addition is not associative, so
    summing as chunks finish would make the backward -- and a seeded
    training run -- non-deterministic.  Contributions of a chunk that
    finishes early wait (held in memory) until every earlier chunk has been
    added.
    """

    def __init__(self, grad_rows: Optional[List[Tensor]],
                 grad_weights: Optional[List[Tensor]]) -> None:
        self.grad_rows, self.grad_weights = grad_rows, grad_weights
        self.lock = threading.Lock()
        self.waiting = {}  # chunk id -> (weights, rows)
        self.next = 0

    def __call__(self, chunk_id: int, weights: List[Optional[Tensor]],
                 rows: List[Tuple[int, int, Tensor]]) -> None:
        with self.lock:
            self.waiting[chunk_id] = (weights, rows)
            while self.next in self.waiting:
                weights, rows = self.waiting.pop(self.next)
                for total, part in zip(self.grad_weights or (), weights):
                    if part is not None:
                        total += part
                for piece, first, part in rows:
                    self.grad_rows[piece][first:first + len(part)] += part
                self.next += 1

    def check_done(self, num_chunks: int) -> None:
        assert self.next == num_chunks and not self.waiting, \
            f'{self.next} of {num_chunks} chunks summed'


class DeformConv2dCPUFunction(torch.autograd.Function):
    """segext's CPU DCN v1: chunked gather (``embedding_bag``) + GEMM.

    Parallelism is over chunks: as many worker threads as torch's intra-op
    thread count, each running whole chunks (sampling tables, gather, GEMM)
    on a single intra-op thread; see :func:`_map_chunks`. While the op runs,
    torch's (process-wide) intra-op thread count is 1 -- unless the work is
    one chunk (:func:`_plan`).
    """

    @staticmethod
    def forward(ctx, input: Tensor, offset: Tensor, weight: Tensor,
                bias: Optional[Tensor], stride: Tuple[int, int],
                padding: Tuple[int, int], dilation: Tuple[int, int],
                groups: int, deform_groups: int, chunk_bytes: int) -> Tensor:
        geo = _Geometry(input, weight, stride, padding, dilation, groups,
                        deform_groups)
        chunks, workers, threads = _plan(geo, chunk_bytes,
                                         input.element_size())
        with _num_threads(threads):
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
                    index, bilinear, _ = geo.bilinear(offsets, grid, n, p0,
                                                      p1)
                    # order the samples (tap row, pixel, tap col), the 4
                    # neighbours innermost: the columns then form a
                    # (kh, L*kw) image and the GEMM is a kh×kw conv with
                    # stride (kh, kw) -> (1, L), which oneDNN runs faster
                    # than a plain GEMM of that shape
                    index = index.view(4, geo.deform_groups, kh, kw,
                                       length).permute(1, 2, 4, 3,
                                                       0).contiguous()
                    bilinear = bilinear.view(4, geo.deform_groups, kh, kw,
                                             length).permute(1, 2, 4, 3,
                                                             0).contiguous()
                    written = set()
                    for (c0, c1, g, d), x_rows in zip(geo.pieces, rows):
                        cols = _sample(index[d].view(-1, 4),
                                       bilinear[d].view(-1, 4),
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

            _map_chunks(run, chunks, workers)
        ctx.geo = geo
        ctx.chunk_bytes = chunk_bytes
        ctx.has_bias = bias is not None
        ctx.save_for_backward(offset, weight, *rows)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):
        chunks, workers, threads = _plan(ctx.geo, ctx.chunk_bytes,
                                         grad_output.element_size())
        with _num_threads(threads):
            grads = DeformConv2dCPUFunction._backward(ctx, grad_output,
                                                      chunks, workers)
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

            _map_chunks(
                zero,
                _bands(grad_rows[0].size(0), workers,
                       sum(_nbytes(g) for g in grad_rows)), workers)
        grad_weights = [torch.zeros_like(w) for w in weights] \
            if need_weight else None
        # chunks overlap in the input rows they read and all add into the
        # weight gradient: summed in chunk order, whichever worker ran them
        accumulate = _InOrderSum(grad_rows, grad_weights)
        grad_offset = torch.empty_like(offset) if need_offset else None
        grad_offsets = geo.offset_planes(grad_offset) if need_offset \
            else None

        def run(chunks):
            for chunk_id, (n, p0, p1) in chunks:
                length = p1 - p0
                chunk_weights = [None] * len(weights)  # [(O/g, K*Cp)]
                chunk_rows = []  # [(piece, first row, (rows, Cp))]
                index, bilinear, frac = geo.bilinear(offsets, grid, n, p0,
                                                     p1)
                # samples ordered (pixel, tap), the 4 neighbours innermost
                index = index.permute(1, 3, 2, 0).contiguous()
                bilinear = bilinear.permute(1, 3, 2, 0).contiguous()
                # (dg, L, K, 4) each
                grad_bilinear = torch.zeros_like(bilinear) if need_offset \
                    else None
                for i, ((c0, c1, g, d), x_rows, w_piece) in enumerate(
                        zip(geo.pieces, rows, weights)):
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
                            g_out, cols.detach().view(length, -1))
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

        _map_chunks(run, list(enumerate(chunks)), workers)
        accumulate.check_done(len(chunks))

        grad_input = grad_weight = grad_bias = None
        if need_input:
            grad_input = _from_channels_last_rows(grad_rows, geo, workers)
        if need_weight:
            grad_weight = torch.empty_like(weight)
            for i, (c0, c1, g, _) in enumerate(geo.pieces):
                g_w = grad_weights[i]  # (O/g, K*Cp)
                grad_weight[g * og:(g + 1) * og, c0 - g * geo.in_per_group:
                            c1 - g * geo.in_per_group] = g_w.view(
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
    if input.dtype not in _CPU_DTYPES:
        raise TypeError(f'deform_conv2d_cpu supports {_CPU_DTYPES}, got '
                        f'{input.dtype} (impl="mmcv" takes other dtypes)')
    weight = weight.type_as(input)
    if bias is not None:
        bias = bias.type_as(input)
    return DeformConv2dCPUFunction.apply(input.contiguous(),
                                         offset.contiguous(), weight, bias,
                                         _pair(stride), _pair(padding),
                                         _pair(dilation), groups,
                                         deform_groups, int(chunk_bytes))


def _deform_conv2d_mmcv(input: Tensor, offset: Tensor, weight: Tensor,
                        bias: Optional[Tensor], stride: Tuple[int, int],
                        padding: Tuple[int, int], dilation: Tuple[int, int],
                        groups: int, deform_groups: int,
                        im2col_step: int) -> Tensor:
    """mmcv's kernel as ``mmcv.ops.DeformConv2d.forward`` calls it, + bias."""
    kh, kw = weight.shape[2:]
    # as upstream's module: mmcv's kernel rejects inputs smaller than the
    # kernel, so pad bottom/right with zeros and crop the output back
    pad_h, pad_w = max(kh - input.size(2), 0), max(kw - input.size(3), 0)
    if pad_h or pad_w:
        input = F.pad(input, (0, pad_w, 0, pad_h)).contiguous()
        offset = F.pad(offset, (0, pad_w, 0, pad_h)).contiguous()
    out = mmcv_deform_conv2d(input, offset, weight, stride, padding,
                             dilation, groups, deform_groups, False,
                             im2col_step)
    if pad_h or pad_w:
        out = out[:, :, :out.size(2) - pad_h, :out.size(3) - pad_w]
        out = out.contiguous()
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1).type_as(out)
    return out


def deform_conv2d(input: Tensor,
                  offset: Tensor,
                  weight: Tensor,
                  bias: Optional[Tensor] = None,
                  stride: IntPair = 1,
                  padding: IntPair = 0,
                  dilation: IntPair = 1,
                  groups: int = 1,
                  deform_groups: int = 1,
                  im2col_step: int = 32,
                  impl: str = 'auto') -> Tensor:
    """DCN v1 (Dai et al. 2017, eq. (1)-(2)) with an optional bias.

    Args:
        input (Tensor): (B, C, H, W).
        offset (Tensor): (B, deform_groups*kh*kw*2, Ho, Wo), mmcv's layout:
            per deformable group, per tap (row-major), (dy, dx).
        weight (Tensor): (O, C/groups, kh, kw).
        bias (Tensor, optional): (O,).
        stride, padding, dilation (int | tuple[int, int]): as ``F.conv2d``.
        groups (int): conv groups. deform_groups (int): offset groups.
        im2col_step (int): images per call of mmcv's kernel (mmcv only).
        impl (str): 'auto' (segext's path for float CPU tensors, mmcv's
            kernel otherwise; see :func:`deform_conv_impl`), 'mmcv' or
            'segext'.

    Returns:
        Tensor: (B, O, Ho, Wo).
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if select_deform_conv_impl(input, impl) == 'segext':
        return deform_conv2d_cpu(input, offset, weight, bias, stride,
                                 padding, dilation, groups, deform_groups)
    return _deform_conv2d_mmcv(input, offset, weight, bias, stride, padding,
                               dilation, groups, deform_groups, im2col_step)


@MODELS.register_module('DCNv1')
class DeformConv2dWithOffset(BaseModule):
    """DCN v1 layer with its own offset conv and a bias (UPSNet Sec. 3.1).

    ``conv_offset``, a plain conv with the same kernel, stride, padding and
    dilation, predicts the 2·deform_groups·kh·kw offsets (Dai et al. 2017,
    Sec. 2.1); its weight and bias start at zero, so the layer starts as a
    plain conv. Unlike ``mmcv.ops.DeformConv2dPack`` the main conv may carry
    a bias. Registered as ``'DCNv1'`` in mmengine's root ``MODELS``, so
    ``conv_cfg=dict(type='DCNv1')`` works with ``build_conv_layer`` and
    ``ConvModule``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation,
        groups: as ``nn.Conv2d``.
        deform_groups (int): channel groups sharing one set of offsets.
        bias (bool): learn a bias on the deformable conv. Default True.
        impl (str): 'auto', 'mmcv' or 'segext'; see :func:`deform_conv2d`.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: IntPair = 3,
                 stride: IntPair = 1,
                 padding: IntPair = 1,
                 dilation: IntPair = 1,
                 groups: int = 1,
                 deform_groups: int = 1,
                 bias: bool = True,
                 impl: str = 'auto',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f'in_channels {in_channels} and out_channels '
                             f'{out_channels} must be divisible by groups '
                             f'{groups}')
        if in_channels % deform_groups:
            raise ValueError(f'in_channels {in_channels} must be divisible '
                             f'by deform_groups {deform_groups}')
        _check_impl(impl)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.deform_groups = deform_groups
        self.impl = impl
        # attributes nn.Conv2d users (and ConvModule) look for
        self.transposed = False
        self.output_padding = (0, 0)
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups,
                        *self.kernel_size))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter('bias', None)
        self.conv_offset = nn.Conv2d(
            in_channels,
            deform_groups * 2 * self.kernel_size[0] * self.kernel_size[1],
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s init for weight and bias; zero offset conv."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)
        self.init_offset()

    def init_offset(self) -> None:
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def init_weights(self) -> None:
        # a parent's init_cfg (e.g. Kaiming on every 'Conv2d') reaches
        # conv_offset before this runs; the offsets must still start at zero
        super().init_weights()
        self.init_offset()

    def forward(self, x: Tensor) -> Tensor:
        offset = self.conv_offset(x)  # (B, dg*kh*kw*2, Ho, Wo)
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride,
                             self.padding, self.dilation, self.groups,
                             self.deform_groups, impl=self.impl)

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, '
                f'kernel_size={self.kernel_size}, stride={self.stride}, '
                f'padding={self.padding}, dilation={self.dilation}, '
                f'groups={self.groups}, deform_groups={self.deform_groups}, '
                f'bias={self.bias is not None}, impl={self.impl!r}')
