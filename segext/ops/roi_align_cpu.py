"""Average RoIAlign on CPU as two small matrix products per RoI.

RoIAlign (He et al., "Mask R-CNN", ICCV 2017, Sec. 3) averages, in each of
the ``Ph × Pw`` bins of a RoI, bilinear samples of the feature map on a
regular ``gh × gw`` grid. With mmcv's convention (``mmcv.ops.RoIAlign``,
``pool_mode='avg'``) a sample at ``(y, x)`` is

* zero when ``y < -1``, ``y > H``, ``x < -1`` or ``x > W``;
* otherwise clamped up to 0, its low neighbour ``int(y)`` clamped to
  ``H - 1`` (the sample then sits on it), and interpolated with the weights
  ``(1 - ly, ly) ⊗ (1 - lx, lx)``;

and the grid is ``sampling_ratio`` per side, or ``ceil(roi_size / P)``
when it is 0. Every factor of a sample's weight -- validity, bilinear
weight, ``1 / (gh·gw)`` -- is a function of ``y`` times a function of
``x``, so the pooled RoI is separable::

    out[r, c] = A_r · X[b_r, c] · B_r^T

with ``A_r`` ``(Ph, H)``: row ``p`` holds ``1/gh`` times the y-weights of
bin row ``p``'s samples, summed per map row, and ``B_r`` ``(Pw, W)`` the same
in x. :func:`roi_align_cpu` computes it on the rows and columns the RoI
reaches (two matrix products per RoI, no per-channel gather) and its
backward as ``A_r^T · G · B_r``, added into the input gradient RoI by RoI
in order (deterministic). The results equal mmcv's kernel up to float
rounding (tested forward and backward); like mmcv, the RoIs get no
gradient. mmcv's CPU kernel runs one thread through every channel of every
bin (docs/upsnet.md, "Ninth round").
"""
from typing import Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ['is_average_roi_align', 'roi_align_cpu']


def _axis_weights(start: Tensor, length: Tensor, bins: int,
                  sampling_ratio: int, size: int) -> Tuple[Tensor, Tensor]:
    """One axis of every RoI: ``(R, bins, size)`` weights and the
    ``(R, 2)`` first and last map index they reach (last < first: none).

    ``start``, ``length``: ``(R,)`` in map coordinates (mmcv's
    ``roi_start`` and ``roi_height``/``roi_width``).
    """
    rois = start.shape[0]
    bin_size = length / bins
    if sampling_ratio > 0:
        grid = torch.full((rois, ), sampling_ratio, dtype=torch.long)
    else:
        grid = torch.ceil(length / bins).long()
    steps = max(int(grid.max()) if rois else 0, 1)
    # (R, bins, steps): mmcv's expression, in the same order
    sample = torch.arange(steps, dtype=start.dtype) + 0.5
    pos = (start[:, None, None] +
           torch.arange(bins, dtype=start.dtype)[None, :, None] *
           bin_size[:, None, None] +
           sample * bin_size[:, None, None] /
           grid.clamp(min=1).to(start.dtype)[:, None, None])
    used = ((sample[None, None] < grid[:, None, None].to(start.dtype))
            & (pos >= -1) & (pos <= size))
    pos = pos.clamp(min=0)
    low = pos.long()  # pos >= 0: truncation is floor
    at_edge = low >= size - 1
    low = low.clamp(max=size - 1)
    high = torch.where(at_edge, low, low + 1)
    pos = torch.where(at_edge, low.to(pos.dtype), pos)
    frac = pos - low
    scale = used.to(pos.dtype) / grid.clamp(min=1).to(pos.dtype)[:, None,
                                                                  None]
    weights = pos.new_zeros(rois, bins, size)
    weights.scatter_add_(2, low.view(rois, bins, -1),
                         ((1 - frac) * scale).view(rois, bins, -1))
    weights.scatter_add_(2, high.view(rois, bins, -1),
                         (frac * scale).view(rois, bins, -1))
    first = torch.where(used, low, size).flatten(1).amin(1)
    last = torch.where(used, high, -1).flatten(1).amax(1)
    return weights, torch.stack([first, last], 1)


def _separable_weights(rois: Tensor, output_size: Tuple[int, int],
                       spatial_scale: float, sampling_ratio: int,
                       aligned: bool, height: int, width: int):
    """Per RoI: image index, rows ``(y0, y1)``, columns ``(x0, x1)`` it
    reaches (half-open) and its ``A`` ``(Ph, y1-y0)`` and ``B``
    ``(Pw, x1-x0)`` restricted to them; None where it reaches nothing."""
    offset = 0.5 if aligned else 0.0
    boxes = rois[:, 1:] * spatial_scale - offset  # (R, 4) x1 y1 x2 y2
    size_x = boxes[:, 2] - boxes[:, 0]
    size_y = boxes[:, 3] - boxes[:, 1]
    if aligned:
        if bool((size_x < 0).any() or (size_y < 0).any()):
            raise ValueError('RoIAlign RoIs must have x2 >= x1 and y2 >= y1, '
                             f'got {rois[(size_x < 0) | (size_y < 0)]}')
    else:  # mmcv's legacy mode: at least one pixel
        size_x, size_y = size_x.clamp(min=1), size_y.clamp(min=1)
    a, reach_y = _axis_weights(boxes[:, 1], size_y, output_size[0],
                               sampling_ratio, height)
    b, reach_x = _axis_weights(boxes[:, 0], size_x, output_size[1],
                               sampling_ratio, width)
    plans = []
    for r, (image, (y0, y1), (x0, x1)) in enumerate(
            zip(rois[:, 0].long().tolist(), reach_y.tolist(),
                reach_x.tolist())):
        if y1 < y0 or x1 < x0:
            plans.append(None)
            continue
        plans.append((image, (y0, y1 + 1), (x0, x1 + 1),
                      a[r, :, y0:y1 + 1], b[r, :, x0:x1 + 1]))
    return plans


def _pool(crop: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``a @ crop @ b.T`` per channel: (C, h, w) -> (C, Ph, Pw), the
    cheaper side first."""
    h, w = crop.shape[-2:]
    if h * w * b.shape[0] + a.shape[0] * h * b.shape[0] <= \
            a.shape[0] * h * w + a.shape[0] * w * b.shape[0]:
        return torch.matmul(a, torch.matmul(crop, b.t()))
    return torch.matmul(torch.matmul(a, crop), b.t())


class _RoIAlignCPU(torch.autograd.Function):

    @staticmethod
    def forward(ctx, input: Tensor, rois: Tensor, output_size: Tuple[int,
                                                                     int],
                spatial_scale: float, sampling_ratio: int,
                aligned: bool) -> Tensor:
        _, channels, height, width = input.shape
        plans = []
        if rois.shape[0]:
            plans = _separable_weights(rois.to(input.dtype), output_size,
                                       spatial_scale, sampling_ratio,
                                       aligned, height, width)
        out = input.new_zeros(rois.shape[0], channels, *output_size)
        for r, plan in enumerate(plans):
            if plan is None:
                continue
            image, (y0, y1), (x0, x1), a, b = plan
            out[r] = _pool(input[image, :, y0:y1, x0:x1], a, b)
        ctx.plans = plans
        ctx.input_shape = input.shape
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):
        if not ctx.needs_input_grad[0]:
            return (None, ) * 6
        grad_input = grad_output.new_zeros(ctx.input_shape)
        for r, plan in enumerate(ctx.plans):
            if plan is None:
                continue
            image, (y0, y1), (x0, x1), a, b = plan
            # (C, h, w) += A^T (h, Ph) @ G (C, Ph, Pw) @ B (Pw, w)
            grad_input[image, :, y0:y1, x0:x1] += _pool(
                grad_output[r], a.t(), b.t())
        return grad_input, None, None, None, None, None


def roi_align_cpu(input: Tensor,
                  rois: Tensor,
                  output_size: Tuple[int, int],
                  spatial_scale: float = 1.0,
                  sampling_ratio: int = 0,
                  aligned: bool = True) -> Tensor:
    """mmcv's average ``roi_align`` on CPU float tensors, separably.

    Args:
        input (Tensor): (B, C, H, W), any memory layout.
        rois (Tensor): (R, 5) ``(image index, x1, y1, x2, y2)`` in input
            pixels before ``spatial_scale``.
        output_size, spatial_scale, sampling_ratio, aligned: as
            ``mmcv.ops.RoIAlign``.

    Returns:
        Tensor: (R, C, Ph, Pw).
    """
    if input.device.type != 'cpu' or not input.is_floating_point():
        raise ValueError('roi_align_cpu needs a floating-point CPU input, '
                         f'got {input.dtype} on {input.device}')
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError('rois must have shape (R, 5), got '
                         f'{tuple(rois.shape)}')
    output_size = tuple(int(s) for s in output_size)
    return _RoIAlignCPU.apply(input, rois.detach(), output_size,
                              float(spatial_scale), int(sampling_ratio),
                              bool(aligned))


def is_average_roi_align(layer) -> bool:
    """Is ``layer`` an ``mmcv.ops.RoIAlign`` that :func:`roi_align_cpu`
    reproduces (average pooling, mmcv's own kernel)?"""
    from mmcv.ops import RoIAlign
    return (type(layer) is RoIAlign and layer.pool_mode == 'avg'
            and not layer.use_torchvision)

