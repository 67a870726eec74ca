"""Per-pixel cross-entropy of x4 bilinearly upsampled logits, on CPU.

UPSNet's L_sem (Xiong et al., CVPR 2019, Sec. 3.3) classifies the 1/4-scale
semantic logits upsampled to the label map: :func:`upsampled_nll` gives
``F.cross_entropy(F.interpolate(x, size=(4h, 4w), mode='bilinear',
align_corners=False), labels, class_weight, reduction='none',
ignore_index=ignore_index)`` without the full-resolution logits, their
log-softmax and their gradients in memory (each 517 MB for 133 classes at
1216x800). Two implementations, same values to float rounding:

* :class:`NativeUpsampledNLL` -- segext's C++ kernels
  (``csrc/upsampled_nll.cpp``, built by :mod:`.native_build`): per output
  pixel one fused pass (interpolation, log-sum-exp, nll) in the forward,
  and in the backward the recomputed softmax minus the one-hot label
  written straight into the source rows it read (the adjoint of the
  upsampling); bands of rows run on :mod:`.chunk_threads`' workers.
* :class:`BandedUpsampledNLL` -- PyTorch ops on bands of rows
  (``F.interpolate``, ``log_softmax``, a strided depthwise conv for the
  adjoint); used where the kernels cannot be built.

Both keep one float per output pixel (its log-sum-exp) for the backward
and are deterministic (the native backward gathers each source row's
gradient from its output rows in order; the banded one adds bands in
order).
"""
import ctypes
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .chunk_threads import map_chunks, num_workers
from .native_build import KERNEL_SUFFIX, load_kernels, pointer

__all__ = ['BandedUpsampledNLL', 'NativeUpsampledNLL', 'upsampled_nll']

# upsampled logits per band of the PyTorch path
BAND_BYTES = 16 * 2**20


def upsampled_nll(logits: Tensor,
                  labels: Tensor,
                  class_weight: Optional[Tensor] = None,
                  ignore_index: int = -100,
                  impl: str = 'auto') -> Tensor:
    """Per-pixel CE (B, 4h, 4w) of ``logits`` (B, C, h, w) upsampled x4.

    Args:
        logits: float32/float64 CPU logits, either memory layout (their
            gradient comes back in the same one).
        labels: (B, 4h, 4w) class indices or ``ignore_index``.
        class_weight: (C,) per-class weights, or None.
        impl: ``'native'``, ``'torch'`` or ``'auto'`` (native where the
            kernels can be built).
    """
    if labels.shape != (logits.shape[0], 4 * logits.shape[2],
                        4 * logits.shape[3]):
        raise ValueError(f'labels of shape {tuple(labels.shape)} are not '
                         f'4x the logits {tuple(logits.shape)}')
    if impl not in ('auto', 'native', 'torch'):
        raise ValueError(f"impl must be 'auto', 'native' or 'torch', got "
                         f'{impl!r}')
    native = impl == 'native' or (impl == 'auto'
                                  and logits.dtype in KERNEL_SUFFIX
                                  and native_available())
    if native:
        return NativeUpsampledNLL.apply(logits, labels, class_weight,
                                        ignore_index)
    row_bytes = 16 * logits[:, :, 0].numel() * logits.element_size()
    band_rows = max(1, BAND_BYTES // row_bytes - 2)
    return BandedUpsampledNLL.apply(logits, labels, class_weight,
                                    ignore_index, band_rows)


def native_available() -> bool:
    """Are the C++ kernels built and loaded here?"""
    return load_kernels('upsampled_nll') is not None


class _Shape(ctypes.Structure):
    """``Shape`` of csrc/upsampled_nll.cpp (int64 fields, in order)."""
    _fields_ = [(name, ctypes.c_int64)
                for name in ('height', 'width', 'classes', 'ignore_index')]


def _source_bands(batch: int, height: int, workers: int) -> list:
    """(image, first source row, end) per band: about two per worker."""
    step = max(4, -(-height // (2 * workers)))
    return [(n, i0, min(i0 + step, height)) for n in range(batch)
            for i0 in range(0, height, step)]


class NativeUpsampledNLL(torch.autograd.Function):
    """:func:`upsampled_nll` on segext's C++ kernels (module docstring).

    The forward runs bands of output rows, the backward bands of source
    rows (each recomputes the few output rows it shares with its
    neighbours), on :func:`~segext.ops.chunk_threads.map_chunks`' workers.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor,
                class_weight: Optional[Tensor], ignore_index: int) -> Tensor:
        if logits.dtype not in KERNEL_SUFFIX or logits.device.type != 'cpu':
            raise TypeError('the native upsampled CE takes float32/float64 '
                            f'CPU logits, got {logits.dtype} on '
                            f'{logits.device}')
        lib = load_kernels('upsampled_nll')
        if lib is None:
            raise RuntimeError('the upsampled_nll kernels cannot be built '
                               "here (see the warning); use impl='torch'")
        b, c, h, w = logits.shape
        rows = logits.contiguous(memory_format=torch.channels_last)
        labels = labels.to(torch.int64).contiguous()
        if class_weight is not None:
            class_weight = class_weight.to(logits.dtype).contiguous()
        nll = logits.new_empty(labels.shape)  # (B, H, W)
        lse = logits.new_empty(labels.shape)
        shape = _Shape(h, w, c, ignore_index)
        kernel = getattr(
            lib, f'segext_unll_forward_{KERNEL_SUFFIX[logits.dtype]}')
        kernel.restype = ctypes.c_int64
        plane, out_plane = h * w * c, 16 * h * w

        def run(bands):
            bad = []
            for n, i0, i1 in bands:
                at = kernel(ctypes.byref(shape), pointer(rows, n * plane),
                            pointer(labels, n * out_plane),
                            pointer(class_weight), ctypes.c_int64(4 * i0),
                            ctypes.c_int64(4 * i1),
                            pointer(nll, n * out_plane),
                            pointer(lse, n * out_plane))
                if at >= 0:
                    bad.append(n * out_plane + at)
            return bad

        bad = sum(map_chunks(run, _source_bands(b, h, num_workers()),
                             num_workers()), [])
        if bad:
            _raise_bad_label(labels, min(bad), c, ignore_index)
        ctx.save_for_backward(rows, labels, lse, class_weight)
        ctx.channels_last = _memory_format(logits) == torch.channels_last
        ctx.ignore_index = ignore_index
        return nll

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_nll: Tensor):
        rows, labels, lse, class_weight = ctx.saved_tensors
        b, c, h, w = rows.shape
        grad_nll = grad_nll.to(rows.dtype).contiguous()
        grad = torch.empty_like(rows, memory_format=torch.channels_last)
        shape = _Shape(h, w, c, ctx.ignore_index)
        kernel = getattr(load_kernels('upsampled_nll'),
                         f'segext_unll_backward_{KERNEL_SUFFIX[rows.dtype]}')
        plane, out_plane = h * w * c, 16 * h * w

        def run(bands):
            for n, i0, i1 in bands:
                kernel(ctypes.byref(shape), pointer(rows, n * plane),
                       pointer(labels, n * out_plane), pointer(class_weight),
                       pointer(lse, n * out_plane),
                       pointer(grad_nll, n * out_plane), ctypes.c_int64(i0),
                       ctypes.c_int64(i1), pointer(grad, n * plane))

        map_chunks(run, _source_bands(b, h, num_workers()), num_workers())
        if not ctx.channels_last:
            grad = grad.contiguous()
        return grad, None, None, None


def _raise_bad_label(labels: Tensor, flat: int, classes: int,
                     ignore_index: int) -> None:
    n, rest = divmod(flat, labels.shape[1] * labels.shape[2])
    y, x = divmod(rest, labels.shape[2])
    raise ValueError(
        f'semantic label {labels[n, y, x].item()} at image {n}, pixel '
        f'(row {y}, column {x}) is neither a class index in [0, {classes}) '
        f'nor ignore_index {ignore_index}')


class BandedUpsampledNLL(torch.autograd.Function):
    """:func:`upsampled_nll` with PyTorch ops, in bands of rows.

    The value of ``F.cross_entropy(F.interpolate(x, size=(4h, 4w),
    mode='bilinear', align_corners=False), labels, reduction='none')``
    without the full-resolution logits, their log-softmax and their
    gradients (each 517 MB for 133 classes at 1216x800): the output rows of
    ``band_rows`` source rows are upsampled at a time from those rows plus
    one on either side -- the rows bilinear sampling reads -- so each band
    holds exactly the whole map's values.

    The forward keeps each pixel's log-sum-exp ``lse`` (one float per
    pixel). The backward recomputes each band's logits ``z`` and writes the
    gradient of ``nll = w_y (lse - z_y)`` directly: ``g · w_y · (exp(z -
    lse) - onehot(y))`` (0 on ignored pixels), then applies the adjoint of
    the upsampling and adds the bands' input gradients in band order
    (deterministic).
    """

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor,
                class_weight: Optional[Tensor], ignore_index: int,
                band_rows: int) -> Tensor:
        nll = logits.new_empty(labels.shape)  # (B, H, W)
        lse = logits.new_empty(labels.shape)
        for rows, out_rows, crop in _upsample_bands(logits.shape[2],
                                                    band_rows):
            nll[:, out_rows], lse[:, out_rows] = _band_nll(
                logits[:, :, rows], crop, labels[:, out_rows], class_weight,
                ignore_index)
        ctx.save_for_backward(logits, labels, lse)
        ctx.options = (class_weight, ignore_index)
        ctx.band_rows = band_rows
        return nll

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_nll: Tensor):
        logits, labels, lse = ctx.saved_tensors
        class_weight, ignore_index = ctx.options
        b, c, h, w = logits.shape
        # the gradient of the edge-padded source (B, C, h + 2, w + 2), see
        # _upsample_adjoint
        grad_padded = torch.empty(
            (b, c, h + 2, w + 2),
            dtype=logits.dtype,
            device=logits.device,
            memory_format=_memory_format(logits)).zero_()
        kernel = _upsample_adjoint_kernel(logits)
        for rows, out_rows, crop in _upsample_bands(h, ctx.band_rows):
            band = _band_logits(logits[:, :, rows], crop)  # (N, C)
            grad = _band_nll_grad(band, lse[:, out_rows].reshape(-1),
                                  labels[:, out_rows].reshape(-1),
                                  grad_nll[:, out_rows].reshape(-1),
                                  class_weight, ignore_index)
            # (B, C, R, W) with channels-last strides
            grad = grad.view(b, -1, 4 * w, c).permute(0, 3, 1, 2)
            s0 = out_rows.start // 4
            grad_padded[:, :, s0:s0 + grad.shape[2] // 4 + 2] += F.conv2d(
                grad, kernel, stride=4, padding=6, groups=c)
        return _unpad_adjoint(grad_padded), None, None, None, None


def _memory_format(tensor: Tensor) -> torch.memory_format:
    """channels-last for a channels-last (and not also plain contiguous)
    tensor, else the standard layout."""
    if tensor.is_contiguous(memory_format=torch.channels_last) \
            and not tensor.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _band_nll_grad(band: Tensor, lse: Tensor, labels: Tensor,
                   grad_nll: Tensor, class_weight: Optional[Tensor],
                   ignore_index: int) -> Tensor:
    """d(sum g · nll)/dz of one band, in place of ``band`` (N, C):
    ``g · w_y · (softmax(z) - onehot(y))``, zero on ignored pixels."""
    keep = labels != ignore_index
    target = labels.masked_fill(~keep, 0)
    scale = grad_nll * keep
    if class_weight is not None:
        scale = scale * class_weight[target]
    grad = band.sub_(lse[:, None]).exp_().mul_(scale[:, None])
    grad[torch.arange(len(target)), target] -= scale
    return grad


def _upsample_adjoint_kernel(like: Tensor) -> Tensor:
    """(C, 1, 8, 8) depthwise kernel of the adjoint of x4 bilinear
    upsampling without clamping (align_corners=False).

    Output row ``4k + r`` samples the source at ``k + r/4 - 3/8``, so source
    row ``j`` receives the output rows ``4j - 6 .. 4j + 1`` with weights
    ``(1, 3, 5, 7, 7, 5, 3, 1) / 8``: a stride-4 conv over the gradient
    padded by 6 on each side gives the gradient of the source padded by one
    row (column) on each side.
    """
    k = like.new_tensor([1, 3, 5, 7, 7, 5, 3, 1]) / 8
    return torch.outer(k, k).expand(like.shape[1], 1, 8, 8).contiguous()


def _unpad_adjoint(grad_padded: Tensor) -> Tensor:
    """Adjoint of edge-padding by one: (B, C, h+2, w+2) -> (B, C, h, w).

    torch clamps sampling positions below 0 (and the neighbour above the
    last row) to the edge, which is upsampling the edge-padded map without
    clamping; the padding's gradient goes back to the edge rows/columns.
    """
    g = grad_padded[:, :, 1:-1].clone()
    g[:, :, 0] += grad_padded[:, :, 0]
    g[:, :, -1] += grad_padded[:, :, -1]
    out = g[..., 1:-1].clone()
    out[..., 0] += g[..., 0]
    out[..., -1] += g[..., -1]
    return out


def _upsample_bands(height: int, band_rows: int):
    """Yield ``(source rows read, output rows, crop)`` per band of the x4
    upsampling of ``height`` rows; ``crop`` picks the band's output rows out
    of the upsampled source rows."""
    for s0 in range(0, height, band_rows):
        s1 = min(s0 + band_rows, height)
        lo, hi = max(s0 - 1, 0), min(s1 + 1, height)
        yield (slice(lo, hi), slice(4 * s0, 4 * s1),
               slice(4 * (s0 - lo), 4 * (s1 - lo)))


def _band_nll(rows: Tensor, crop: slice, labels: Tensor,
              class_weight: Optional[Tensor], ignore_index: int):
    """Per-pixel CE ``(B, R, W)`` of one band, and the pixels' log-sum-exp.

    ``rows`` ``(B, C, n, w)`` are upsampled x4 (bilinear; the scale is 1/4
    exactly, as for the whole map, so sampling positions and weights are the
    whole map's), cropped to the band's output rows ``crop`` and classified
    against ``labels`` ``(B, R, W)``. Channels-last, so that the softmax
    runs over contiguous classes.
    """
    band = _band_logits(rows, crop)  # (N, C)
    log_p = F.log_softmax(band, dim=1)
    nll = F.nll_loss(
        log_p, labels.reshape(-1), class_weight, reduction='none',
        ignore_index=ignore_index).view(labels.shape)
    lse = (band[:, 0] - log_p[:, 0]).view(labels.shape)
    return nll, lse


def _band_logits(rows: Tensor, crop: slice) -> Tensor:
    """(B, C, n, w) -> the band's upsampled logits (B*R*W, C)."""
    c, n, w = rows.shape[1:]
    up = F.interpolate(
        rows.contiguous(memory_format=torch.channels_last),
        size=(4 * n, 4 * w), mode='bilinear', align_corners=False)
    return up[:, :, crop].permute(0, 2, 3, 1).reshape(-1, c)
