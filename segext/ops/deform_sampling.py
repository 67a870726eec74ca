"""Bilinear sampling of one chunk of a CPU DCN v1 call, and its adjoint.

Dai et al., ICCV 2017, eq. (2): every sample -- chunk pixel ``l``, tap
``k`` -- is the bilinear interpolation of its 4 neighbours in the input's
pixels as rows (channels-last). A chunk's columns are ``(L*K, Cp)``, row
``l*K + k``, so ``columns.view(L, K*Cp)`` is the GEMM operand of eq. (1).

Two implementations with the same interface and results (to float
rounding; both tested against mmcv's kernel):

* :class:`NativeSampling` -- segext's C++ kernels
  (``csrc/deform_sampling.cpp``, built by :mod:`.native_build`): one pass
  over the samples for the columns, one for the input and offset
  gradients together (no sampling tables in memory);
* :class:`TorchSampling` -- PyTorch ops: sampling tables
  (:meth:`DeformGeometry.bilinear`), ``F.embedding_bag`` for the columns,
  its backward for the bilinear-weight gradients and a CSR product for
  the input gradient; used where the kernels cannot be built.

:func:`chunk_sampling` picks one.
"""
import ctypes
import threading
import warnings
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .deform_geometry import DeformGeometry
from .native_build import KERNEL_SUFFIX, load_kernels, pointer

__all__ = ['NativeSampling', 'TorchSampling', 'chunk_sampling',
           'native_sampling_available']

RowGrad = Tuple[int, Tensor]  # (first row, (rows, Cp)) of an input gradient


def native_sampling_available() -> bool:
    """Are the C++ sampling kernels built and loaded here?"""
    return load_kernels('deform_sampling') is not None


def chunk_sampling(geo: DeformGeometry, offset: Tensor, grid: Tensor,
                   n: int, p0: int, p1: int, native: bool,
                   for_backward: bool = False):
    """The sampling of chunk (image ``n``, output pixels ``p0..p1``).

    ``offset`` is the op's contiguous (B, dg*K*2, Ho, Wo) offset; ``grid``
    (:meth:`DeformGeometry.regular_grid`) and ``for_backward`` (keep what
    the offset gradient needs) matter to the PyTorch path only.
    """
    if native:
        return NativeSampling(geo, offset, n, p0, p1)
    return TorchSampling(geo, offset, grid, n, p0, p1, for_backward)


class _Geometry(ctypes.Structure):
    """``Geometry`` of csrc/deform_sampling.cpp (int64 fields, in order)."""
    _fields_ = [(name, ctypes.c_int64) for name in (
        'height', 'width', 'out_w', 'kernel_h', 'kernel_w', 'stride_h',
        'stride_w', 'pad_h', 'pad_w', 'dil_h', 'dil_w', 'channels', 'plane')]


_SCRATCH = threading.local()


def _scratch(rows: int, cols: int, like: Tensor) -> Tensor:
    """A (rows, cols) buffer of this thread, kept for its next chunks.

    A chunk's columns are up to ``chunk_bytes`` (16 MiB); allocated afresh
    per chunk, glibc maps them from the OS in the worker threads' arenas
    every time, and the page faults tripled the sampling's time with two
    workers (docs/deform_conv.md, "Third round"). So each thread keeps one
    buffer, grown as needed, per dtype.
    """
    key = like.dtype
    store = getattr(_SCRATCH, 'buffers', None)
    if store is None:
        store = _SCRATCH.buffers = {}
    buf = store.get(key)
    if buf is None or buf.numel() < rows * cols:
        buf = store[key] = like.new_empty(rows * cols)
    return buf[:rows * cols].view(rows, cols)


class NativeSampling:
    """One chunk's sampling with segext's C++ kernels.

    The offset gradient is added into ``grad_offset`` (zero-initialised by
    the caller) piece by piece, so pieces sharing a deformable group sum
    their contributions in piece order.
    """

    def __init__(self, geo: DeformGeometry, offset: Tensor, n: int, p0: int,
                 p1: int) -> None:
        self.lib = load_kernels('deform_sampling')
        self.geo, self.offset, self.n, self.p0, self.p1 = \
            geo, offset, n, p0, p1
        self.length = p1 - p0
        self.suffix = KERNEL_SUFFIX[offset.dtype]

    def _call(self, name: str, *args) -> None:
        getattr(self.lib, f'segext_dcn_{name}_{self.suffix}')(*args)

    def _struct(self, x_rows: Tensor) -> _Geometry:
        # the kernels take input (gradient) rows and columns Cp apart
        if x_rows.stride(0) != x_rows.size(1) or x_rows.stride(1) != 1:
            raise ValueError('native sampling needs contiguous input rows, '
                             f'got strides {x_rows.stride()}')
        geo = self.geo
        return _Geometry(geo.height, geo.width, geo.out_w, *geo.kernel,
                         *geo.stride, *geo.padding, *geo.dilation,
                         x_rows.size(1), geo.out_pixels)

    def _planes(self, tensor: Tensor, d: int) -> ctypes.c_void_p:
        """The offset (gradient) planes of image n, deformable group d."""
        geo = self.geo
        return pointer(tensor,
                    (self.n * geo.deform_groups + d) * geo.taps * 2 *
                    geo.out_pixels)

    @property
    def _base(self) -> ctypes.c_int64:
        return ctypes.c_int64(self.n * self.geo.height * self.geo.width)

    def columns(self, d: int, x_rows: Tensor) -> Tensor:
        """(L*K, Cp): the samples of deformable group d from ``x_rows``."""
        # valid until this thread's next call: the caller uses the columns
        # (GEMM, backward) before it samples the next piece or chunk
        cols = _scratch(self.length * self.geo.taps, x_rows.size(1), x_rows)
        self._call('columns', ctypes.byref(self._struct(x_rows)),
                   pointer(x_rows), self._planes(self.offset, d), self._base,
                   ctypes.c_int64(self.p0), ctypes.c_int64(self.p1),
                   pointer(cols))
        return cols

    def backward(self, d: int, x_rows: Tensor, grad_cols: Tensor,
                 need_input: bool,
                 grad_offset: Optional[Tensor]) -> Optional[RowGrad]:
        """Adjoint of :meth:`columns` for the column gradients
        ``grad_cols`` (L*K, Cp): adds the offset gradient into
        ``grad_offset`` (or skips it: None) and returns the gradient of the
        input rows the chunk reads, ``(first row, (rows, Cp))``, or None."""
        geo = self._struct(x_rows)
        grad_rows, lo = None, 0
        if need_input:
            lo_hi = (ctypes.c_int64 * 2)()
            self._call('row_range', ctypes.byref(geo),
                       self._planes(self.offset, d), self._base,
                       ctypes.c_int64(self.p0), ctypes.c_int64(self.p1),
                       lo_hi)
            lo, hi = lo_hi[0], lo_hi[1]
            if hi >= lo:
                grad_rows = x_rows.new_zeros(hi - lo + 1, x_rows.size(1))
        if grad_rows is None and grad_offset is None:
            return None
        grad_cols = grad_cols.contiguous()  # kept alive through the call
        self._call('columns_backward', ctypes.byref(geo), pointer(x_rows),
                   self._planes(self.offset, d), pointer(grad_cols),
                   self._base, ctypes.c_int64(self.p0),
                   ctypes.c_int64(self.p1), pointer(grad_rows),
                   ctypes.c_int64(lo),
                   self._planes(grad_offset, d) if grad_offset is not None
                   else ctypes.c_void_p(None))
        return None if grad_rows is None else (lo, grad_rows)

    def finish(self, grad_offset: Optional[Tensor]) -> None:
        """Nothing left to do: the kernels wrote the offset gradient."""


class TorchSampling:
    """One chunk's sampling with PyTorch ops (``embedding_bag``, CSR).

    The sampling tables (4 neighbours and bilinear weights per sample,
    ordered (dg, pixel, tap, neighbour)) are built once per chunk; the
    bilinear-weight gradients of all pieces are summed and turned into the
    offset gradient by :meth:`finish`.
    """

    def __init__(self, geo: DeformGeometry, offset: Tensor, grid: Tensor,
                 n: int, p0: int, p1: int, for_backward: bool) -> None:
        self.geo, self.n, self.p0, self.p1 = geo, n, p0, p1
        self.for_backward = for_backward
        # (columns, weight leaf) of the last piece sampled, for backward()
        self.graph = None
        index, weight, self.valid, self.frac = geo.bilinear(
            geo.offset_planes(offset), grid, n, p0, p1)  # (4, dg, K, L)
        self.index = index.permute(1, 3, 2, 0).contiguous()  # (dg, L, K, 4)
        self.weight = weight.permute(1, 3, 2, 0).contiguous()
        self.grad_weight = None

    def columns(self, d: int, x_rows: Tensor) -> Tensor:
        weight = self.weight[d].view(-1, 4)
        if not self.for_backward:
            return F.embedding_bag(self.index[d].view(-1, 4), x_rows,
                                   per_sample_weights=weight, mode='sum')
        # keep the graph: embedding_bag's backward gives the gradient of
        # every bilinear weight (one dot product per neighbour)
        leaf = weight.detach().requires_grad_()
        with torch.enable_grad():
            cols = F.embedding_bag(self.index[d].view(-1, 4), x_rows,
                                   per_sample_weights=leaf, mode='sum')
        self.graph = (cols, leaf)
        return cols.detach()

    def backward(self, d: int, x_rows: Tensor, grad_cols: Tensor,
                 need_input: bool,
                 grad_offset: Optional[Tensor]) -> Optional[RowGrad]:
        index = self.index[d].view(-1, 4)
        weight = self.weight[d].view(-1, 4)
        if grad_offset is not None:
            cols, leaf = self.graph  # columns(d, x_rows) ran just before
            self.graph = None
            grad = torch.autograd.grad(cols, leaf, grad_cols)[0]
            if self.grad_weight is None:
                self.grad_weight = torch.zeros_like(self.weight)
            self.grad_weight[d] += grad.view(self.p1 - self.p0, -1, 4)
        if not need_input:
            return None
        return _scatter_rows(index, weight, grad_cols)

    def finish(self, grad_offset: Optional[Tensor]) -> None:
        """Writes the chunk's offset gradient into ``grad_offset``."""
        if grad_offset is None or self.grad_weight is None:
            return
        planes = self.geo.offset_planes(grad_offset)
        _offset_grad(self.grad_weight, self.valid, self.frac,
                     planes[self.n, ..., self.p0:self.p1])


def _scatter_rows(index: Tensor, weight: Tensor, grad: Tensor) -> RowGrad:
    """Adjoint of ``embedding_bag``'s weighted gather: the gradient of the
    rows it read.

    The samples' gradients ``grad`` (S, Cp), weighted, are summed into the
    rows ``lo..hi`` they read, as one sparse (rows × samples) × dense
    product: the transposed sampling matrix in CSR, its entries sorted by
    row (stable, so each row sums its samples in sample order --
    deterministic). Returns ``(lo, (hi - lo + 1, Cp))``.
    """
    flat = index.reshape(-1)
    lo, hi = int(flat.min()), int(flat.max())
    key, perm = torch.sort(flat - lo, stable=True)
    crow = perm.new_zeros(hi - lo + 2)
    torch.cumsum(torch.bincount(key, minlength=hi - lo + 1), 0, out=crow[1:])
    sampling_t = torch.sparse_csr_tensor(
        crow, perm >> 2,  # the sample of each entry (4 per sample)
        weight.reshape(-1).index_select(0, perm),
        (hi - lo + 1, grad.size(0)),
        check_invariants=False)
    return lo, torch.sparse.mm(sampling_t, grad)


def _offset_grad(grad_bilinear: Tensor, valid: Tensor, frac: Tensor,
                 grad_offsets: Tensor) -> None:
    """Offset gradient of one chunk from its bilinear-weight gradients.

    Derivatives of (1-ly, ly) ⊗ (1-lx, lx) w.r.t. (y, x); neighbours that
    count as zero have none. ``grad_bilinear`` (dg, L, K, 4); ``valid``
    (4, dg, K, L); ``frac`` (2, dg, K, L); writes ``grad_offsets``
    (dg, K, 2, L).
    """
    # (4, dg, K, L)
    gb = grad_bilinear.permute(3, 0, 2, 1).contiguous().masked_fill_(
        ~valid, 0)
    ly, lx = frac  # (dg, K, L)
    grad_offsets[..., 0, :] = (gb[2] - gb[0]) * (1 - lx) + (gb[3] -
                                                           gb[1]) * lx
    grad_offsets[..., 1, :] = (gb[1] - gb[0]) * (1 - ly) + (gb[3] -
                                                           gb[2]) * ly


_CSR_WARNING = 'Sparse CSR tensor support is in beta state'
_CSR_WARNED = False


def quiet_csr_warning() -> None:
    """Let torch's one-time "CSR is beta" warning fire here, silenced.

    torch warns once per process when the first CSR tensor is built; that
    would land in users' training logs. Called from the op's calling thread
    before its workers start, it is caught here and never shown (no global
    warning filter is installed).
    """
    global _CSR_WARNED
    if not _CSR_WARNED:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message=_CSR_WARNING)
            torch.sparse_csr_tensor(
                torch.zeros(2, dtype=torch.long),
                torch.zeros(0, dtype=torch.long),
                torch.zeros(0), (1, 1), check_invariants=False)
        _CSR_WARNED = True
