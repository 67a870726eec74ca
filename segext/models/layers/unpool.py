"""2×2 max-pooling that remembers WHERE each maximum was — in 2 bits — and the
matching max-unpooling, as SegNet needs them.

SegNet (Badrinarayanan, Kendall and Cipolla, TPAMI 2017, Sec. 3 and Fig. 3)
stores, for every 2×2/2 max-pooling of the encoder, the position of each
maximum, and its decoder puts every value back at that position (zeros
elsewhere: "max-unpooling").  A 2×2 window has 4 positions, so the paper's
memory argument is 2 bits per pooled element; ``torch.nn.functional``'s
``max_pool2d(..., return_indices=True)`` instead returns int64 flat indices,
64 bits per element — more than the float32 features themselves.

Compact index layout (what :class:`PoolIndices` holds when ``compact``)
-----------------------------------------------------------------------
* The *window code* of a pooled element is the row-major position of its
  maximum inside its window: ``code = 2 * dy + dx``, ``dy, dx ∈ {0, 1}``
  (0 = top-left, 1 = top-right, 2 = bottom-left, 3 = bottom-right).  Pooled
  element ``(n, c, i, j)`` came from input position ``(2i + dy, 2j + dx)``.
* The codes of the whole pooled tensor, taken in row-major (N, C, Hp, Wp)
  order, ``k = ((n * C + c) * Hp + i) * Wp + j``, are packed 4 per byte into
  a 1-D ``torch.uint8`` tensor of ``ceil(N·C·Hp·Wp / 4)`` bytes: element
  ``k`` lives in byte ``k // 4``, bits ``2 * (k % 4)`` and ``2 * (k % 4) + 1``
  (the first element of a byte in its two least significant bits).  Unused
  trailing bits of the last byte are zero.  The layout is defined on byte
  values, so it does not depend on the machine's byte order.

Pooling runs torch's own ``max_pool2d`` kernel and converts its int64 flat
indices to window codes on the fly (a transient, freed at once), so ties and
NaN follow torch exactly: on ties the first maximum in row-major window
order wins (and a window containing NaN points where torch's does).  This
measured faster on CPU than finding the window argmax with strided
comparisons (see ``docs/segnet.md``).

Odd sizes: with ``ceil_mode=True`` (Caffe's pooling, which the original SegNet
used: 45 → 23, so 360×480 → 180×240 → 90×120 → 45×60 → 23×30 → 12×15) the
last window of an odd dimension is clipped at the border; with
``ceil_mode=False`` the last row/column is dropped and unpools to zeros.
Either way the unpooling output size is the recorded pre-pool size.

Unpooling is deterministic: each output position belongs to exactly one
window, so it is written once, by a ``where`` over that window position's
strided view — no scatter, no atomics, no write races.  Gradients are exact:
unpooling and the pooling's selection are each other's adjoint (a gather from
and a scatter to the recorded positions), and each ``backward`` is written
with the other op, so double backward works too.  Autograd keeps only the
packed codes (2 bits per pooled element) for ``backward``.
"""
import functools
import math
from typing import NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from segext.ops.tracing import is_recording

__all__ = [
    'PoolIndices', 'CompactMaxPool2d', 'CompactMaxUnpool2d',
    'max_pool2d_compact', 'max_unpool2d_compact', 'pack_window_codes',
    'unpack_window_codes', 'pooled_size'
]

WINDOW = 2  # kernel size == stride: SegNet's 2×2/2 pooling


class PoolIndices(NamedTuple):
    """Where the maxima of one 2×2/2 max-pooling came from.

    Attributes:
        data (Tensor): either the packed window codes (``torch.uint8``, 1-D,
            ``ceil(numel / 4)`` bytes; see the module docstring) — the compact
            form — or torch's int64 flat indices into each H×W plane, shaped
            like the pooled tensor (``max_pool2d(return_indices=True)``).
        pooled_shape (torch.Size): shape (N, C, Hp, Wp) of the pooled tensor.
        pre_pool_size (tuple[int, int]): (H, W) of the input that was pooled;
            unpooling restores this size.
    """
    data: Tensor
    pooled_shape: torch.Size
    pre_pool_size: Tuple[int, int]

    @property
    def compact(self) -> bool:
        """True for packed 2-bit codes, False for torch's int64 indices."""
        return self.data.dtype == torch.uint8

    @property
    def nbytes(self) -> int:
        """Bytes stored for these indices."""
        return self.data.numel() * self.data.element_size()

    def window_codes(self) -> Tensor:
        """Window codes ``2 * dy + dx`` (uint8), shaped like the pooled
        map."""
        if self.compact:
            return unpack_window_codes(self.data, self.pooled_shape)
        return _codes_from_flat(self.data, self.pre_pool_size)

    def flat_indices(self) -> Tensor:
        """Torch's int64 flat indices (``row * W + col`` in each H×W plane)."""
        if not self.compact:
            return self.data
        codes = self.window_codes().long()
        _, _, hp, wp = self.pooled_shape
        width = self.pre_pool_size[1]
        rows = torch.arange(hp, device=codes.device).view(hp, 1) * WINDOW
        cols = torch.arange(wp, device=codes.device) * WINDOW
        return (rows + codes // 2) * width + cols + codes % 2


def pooled_size(size: int, ceil_mode: bool) -> int:
    """Output length of a 2×2/2 max-pooling along a dimension of ``size``."""
    return -(-size // WINDOW) if ceil_mode else size // WINDOW


# ---------------------------------------------------------------------------
# 2-bit packing
# ---------------------------------------------------------------------------
def _cached_table(fn):
    """Memoise a small lookup table per (arguments, device); built outside
    inference mode so it works in every autograd mode."""
    @functools.lru_cache(maxsize=64)
    def cached(*args):
        with torch.inference_mode(False), torch.no_grad():
            return fn(*args)
    return cached


@_cached_table
def _position_codes(height: int, width: int, device: torch.device) -> Tensor:
    """(H, W) uint8 table: the window code of every input position."""
    rows = torch.arange(height, device=device) % WINDOW * WINDOW
    cols = torch.arange(width, device=device) % WINDOW
    return (rows.view(-1, 1) + cols).to(torch.uint8)


@_cached_table
def _byte_codes(device: torch.device) -> Tensor:
    """(256, 4) uint8 table: the 4 codes packed in each byte value."""
    byte = torch.arange(256, device=device).view(-1, 1)
    shifts = torch.arange(0, 8, 2, device=device)
    return ((byte >> shifts) & 3).to(torch.uint8)


def pack_window_codes(codes: Tensor) -> Tensor:
    """Pack window codes (uint8 values 0..3, any shape) 4 per byte.

    Returns a 1-D uint8 tensor of ``ceil(codes.numel() / 4)`` bytes in the
    layout of the module docstring.
    """
    flat = codes.reshape(-1)
    if flat.dtype != torch.uint8:
        flat = flat.to(torch.uint8)
    pad = -flat.numel() % 4
    if pad:
        flat = F.pad(flat, (0, pad))
    # byte values, not machine words: the layout is the same on every CPU
    quad = flat.view(-1, 4)
    return (quad[:, 0] | (quad[:, 1] << 2) | (quad[:, 2] << 4)
            | (quad[:, 3] << 6))


def unpack_window_codes(packed: Tensor, shape: Sequence[int]) -> Tensor:
    """Inverse of :func:`pack_window_codes`: uint8 codes of ``shape``."""
    numel = math.prod(shape)
    if packed.dtype != torch.uint8 or packed.dim() != 1 \
            or packed.numel() != -(-numel // 4):
        raise ValueError(
            f'packed window codes for shape {tuple(shape)} must be a 1-D '
            f'uint8 tensor of {-(-numel // 4)} bytes, got {packed.dtype} '
            f'of shape {tuple(packed.shape)}')
    codes = _byte_codes(packed.device).index_select(0, packed.int())
    return codes.view(-1)[:numel].view(*shape)


# ---------------------------------------------------------------------------
# The two linear maps behind pooling and unpooling
# ---------------------------------------------------------------------------
def _codes_from_flat(flat: Tensor, size: Tuple[int, int]) -> Tensor:
    """Window codes (uint8) from torch's flat indices ``row * W + col``.

    Windows start at even rows and columns, so an input position's code is
    ``2 * (row % 2) + col % 2``: one gather from a cached (H, W) table.
    """
    table = _position_codes(int(size[0]), int(size[1]), flat.device)
    return torch.take(table, flat)


def _scatter_to_windows(values: Tensor, codes: Tensor,
                        size: Tuple[int, int]) -> Tensor:
    """Max-unpooling: ``out[2i+dy, 2j+dx] = values[i, j]`` where
    ``codes[i, j] == 2*dy + dx``, zeros elsewhere; ``out`` is (…, *size).

    Each window position is one strided view of ``out`` and is written by one
    ``where``, so every output element is written exactly once.
    """
    height, width = size
    hp, wp = values.shape[-2:]
    # floor mode with an odd size leaves the last row/column outside every
    # window: those must be zero; otherwise every element gets written.
    uncovered = height > WINDOW * hp or width > WINDOW * wp
    alloc = values.new_zeros if uncovered else values.new_empty
    out = alloc(values.shape[:-2] + (height, width))
    zero = values.new_zeros(())
    for code in range(4):
        dy, dx = divmod(code, WINDOW)
        part = out[..., dy::WINDOW, dx::WINDOW]
        h, w = min(part.shape[-2], hp), min(part.shape[-1], wp)
        if h == 0 or w == 0:
            continue
        torch.where(codes[..., :h, :w] == code, values[..., :h, :w], zero,
                    out=part[..., :h, :w])
    return out


def _gather_from_windows(full: Tensor, codes: Tensor) -> Tensor:
    """Adjoint of :func:`_scatter_to_windows`: ``out[i, j] = full[2i+dy,
    2j+dx]`` with ``2*dy + dx = codes[i, j]``."""
    hp, wp = codes.shape[-2:]
    # window position 0 (top-left) exists for every window
    out = full[..., 0::WINDOW, 0::WINDOW][..., :hp, :wp].contiguous()
    for code in (1, 2, 3):
        dy, dx = divmod(code, WINDOW)
        part = full[..., dy::WINDOW, dx::WINDOW]
        h, w = min(part.shape[-2], hp), min(part.shape[-1], wp)
        if h == 0 or w == 0:
            continue
        region = out[..., :h, :w]
        torch.where(codes[..., :h, :w] == code, part[..., :h, :w], region,
                    out=region)
    return out


class _WindowScatter(torch.autograd.Function):
    """Unpooling from packed codes; backward gathers (its adjoint)."""

    @staticmethod
    def forward(ctx, values, packed, size):
        ctx.save_for_backward(packed)
        ctx.pooled_shape = values.shape
        codes = unpack_window_codes(packed, values.shape)
        return _scatter_to_windows(values, codes, size)

    @staticmethod
    def backward(ctx, grad_out):
        packed, = ctx.saved_tensors
        return _WindowGather.apply(grad_out, packed,
                                   ctx.pooled_shape), None, None


class _WindowGather(torch.autograd.Function):
    """Selection of the recorded positions; backward scatters."""

    @staticmethod
    def forward(ctx, full, packed, pooled_shape):
        ctx.save_for_backward(packed)
        ctx.size = tuple(full.shape[-2:])
        codes = unpack_window_codes(packed, pooled_shape)
        return _gather_from_windows(full, codes)

    @staticmethod
    def backward(ctx, grad_pooled):
        packed, = ctx.saved_tensors
        return _WindowScatter.apply(grad_pooled, packed,
                                    ctx.size), None, None


class _CompactMaxPool(torch.autograd.Function):
    """2×2/2 max-pooling returning packed codes; autograd keeps only those."""

    @staticmethod
    def forward(ctx, x, ceil_mode):
        # torch's own kernel finds the maxima (so ties and NaN are exactly
        # torch's); its int64 indices are a transient, turned into 2 bits
        pooled, flat = F.max_pool2d(
            x, WINDOW, WINDOW, ceil_mode=ceil_mode, return_indices=True)
        packed = pack_window_codes(_codes_from_flat(flat, x.shape[-2:]))
        del flat
        ctx.mark_non_differentiable(packed)
        ctx.save_for_backward(packed)
        ctx.size = tuple(x.shape[-2:])
        return pooled, packed

    @staticmethod
    def backward(ctx, grad_pooled, grad_packed):
        packed, = ctx.saved_tensors
        return _WindowScatter.apply(grad_pooled, packed, ctx.size), None


# ---------------------------------------------------------------------------
# Functional API
# ---------------------------------------------------------------------------
def _check_4d(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        found = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(
            f'{name} must be a 4-D (N, C, H, W) tensor, got {found}')


def max_pool2d_compact(x: Tensor,
                       ceil_mode: bool = False,
                       compact: bool = True) -> Tuple[Tensor, PoolIndices]:
    """2×2/2 max-pooling that records where each maximum was.

    Args:
        x (Tensor): input of shape (N, C, H, W).
        ceil_mode (bool): ``True`` keeps a clipped window at an odd border
            (Caffe / original SegNet: 45 → 23), ``False`` drops it
            (45 → 22), as in :func:`torch.nn.functional.max_pool2d`.
        compact (bool): record packed 2-bit window codes (True), or torch's
            int64 flat indices (False; 32× the bytes, for comparison).

    Returns:
        tuple: ``(pooled, indices)`` — the pooled tensor (N, C, Hp, Wp) and
        the :class:`PoolIndices`, whose ``pre_pool_size`` (the input's
        (H, W)) is the size :func:`max_unpool2d_compact` restores.
    """
    _check_4d(x, 'max_pool2d_compact input')
    size = tuple(int(s) for s in x.shape[-2:])  # constants in a trace
    if not compact:
        pooled, flat = F.max_pool2d(
            x, WINDOW, WINDOW, ceil_mode=ceil_mode, return_indices=True)
        return pooled, PoolIndices(flat, pooled.shape, size)
    if is_recording():
        # a recorded graph runs forward only: the same ops, no Function
        pooled, flat = F.max_pool2d(
            x, WINDOW, WINDOW, ceil_mode=ceil_mode, return_indices=True)
        packed = pack_window_codes(_codes_from_flat(flat, size))
    else:
        pooled, packed = _CompactMaxPool.apply(x, bool(ceil_mode))
    return pooled, PoolIndices(packed, pooled.shape, size)


def max_unpool2d_compact(x: Tensor,
                         indices: PoolIndices,
                         output_size: Optional[Sequence[int]] = None
                         ) -> Tensor:
    """Max-unpooling: each value of ``x`` goes back to the position its
    maximum came from, zeros elsewhere (SegNet, Fig. 3).

    Args:
        x (Tensor): pooled-resolution input (N, C, Hp, Wp) — in SegNet's
            decoder the feature map, not the pooled tensor itself.
        indices (PoolIndices): from :func:`max_pool2d_compact` (either
            layout).
        output_size (Sequence[int], optional): (H, W) or a full shape ending
            in (H, W); must equal ``indices.pre_pool_size``. Defaults to it.

    Returns:
        Tensor: (N, C, H, W).
    """
    _check_4d(x, 'max_unpool2d_compact input')
    if not isinstance(indices, PoolIndices):
        raise TypeError('indices must be a PoolIndices (from '
                        f'max_pool2d_compact), got {type(indices).__name__}')
    if tuple(x.shape) != tuple(indices.pooled_shape):
        raise ValueError(
            f'max_unpool2d_compact: input has shape {tuple(x.shape)} but the '
            f'indices were recorded for a pooled shape '
            f'{tuple(indices.pooled_shape)}')
    size = tuple(indices.pre_pool_size)
    if output_size is not None and tuple(output_size)[-2:] != size:
        raise ValueError(
            f'max_unpool2d_compact: output_size {tuple(output_size)} does not '
            f'match the pre-pool size {size} recorded in the indices')
    if not indices.compact:
        return F.max_unpool2d(x, indices.data, WINDOW, WINDOW,
                              output_size=size)
    if is_recording():
        codes = unpack_window_codes(indices.data, x.shape)
        return _scatter_to_windows(x, codes, size)
    return _WindowScatter.apply(x, indices.data, size)


# ---------------------------------------------------------------------------
# Module wrappers
# ---------------------------------------------------------------------------
class CompactMaxPool2d(nn.Module):
    """2×2/2 max-pooling returning ``(pooled, PoolIndices)``.

    Args:
        ceil_mode (bool): see :func:`max_pool2d_compact`. Default: False.
        compact (bool): store packed 2-bit codes (True) or torch's int64
            indices (False; for comparison and benchmarking). Default: True.
    """

    def __init__(self, ceil_mode: bool = False, compact: bool = True):
        super().__init__()
        self.ceil_mode = ceil_mode
        self.compact = compact

    def forward(self, x: Tensor) -> Tuple[Tensor, PoolIndices]:
        return max_pool2d_compact(
            x, ceil_mode=self.ceil_mode, compact=self.compact)

    def extra_repr(self) -> str:
        return (f'kernel_size={WINDOW}, stride={WINDOW}, '
                f'ceil_mode={self.ceil_mode}, compact={self.compact}')


class CompactMaxUnpool2d(nn.Module):
    """Max-unpooling to ``indices.pre_pool_size`` (either index layout)."""

    def forward(self, x: Tensor, indices: PoolIndices) -> Tensor:
        return max_unpool2d_compact(x, indices)

    def extra_repr(self) -> str:
        return f'kernel_size={WINDOW}, stride={WINDOW}'
