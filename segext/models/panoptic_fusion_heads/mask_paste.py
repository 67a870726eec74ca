"""Pasting RoI mask logits into image-sized maps, for UPSNet's panoptic head.

The panoptic logits of instance ``i`` (Xiong et al., CVPR 2019, Sec. 3.2)
need its raw ``M x M`` mask logits ``Y_i`` resized to its box ``B_i`` and
zero outside: :func:`paste_mask_logits` builds those ``(N, H, W)`` maps for
training, :func:`paste_mask_crops` only the crops inside the boxes for
inference.  :func:`box_extents` decides which pixels a box covers (the same
everywhere), :func:`box_masks` and :func:`first_box_not_covering` describe
the boxes on the pixel grid, :func:`channel_max` is the argmax helper.
"""
from typing import List, Tuple

import torch
from torch import Tensor

__all__ = [
    'box_extents', 'paste_mask_logits', 'paste_mask_crops', 'box_masks',
    'first_box_not_covering', 'channel_max'
]


def box_extents(boxes: Tensor, size: Tuple[int, int]) -> Tensor:
    """Integer pixel extents ``(x0, y0, x1, y1)`` (end exclusive) of boxes.

    A pixel ``[j, j + 1)`` belongs to a box when it overlaps it, so every box
    covers at least one pixel; extents are clipped to ``size`` = (H, W).
    """
    h, w = size
    x0 = boxes[:, 0].floor().clamp(0, w - 1)
    y0 = boxes[:, 1].floor().clamp(0, h - 1)
    x1 = torch.maximum(boxes[:, 2].ceil(), x0 + 1).clamp(max=w)
    y1 = torch.maximum(boxes[:, 3].ceil(), y0 + 1).clamp(max=h)
    return torch.stack([x0, y0, x1, y1], dim=1).long()


def _bilinear_weights(starts: Tensor, ends: Tensor, extent_lo: Tensor,
                      extent_hi: Tensor, in_size: int,
                      out_size: int) -> Tensor:
    """``(N, out_size, in_size)`` matrices resizing a length-``in_size``
    signal onto ``[starts, ends)`` of an ``out_size`` axis (bilinear,
    ``align_corners=False``, edge-clamped), zero outside ``[lo, hi)``."""
    centres = torch.arange(out_size, device=starts.device) + 0.5  # (out, )
    length = (ends - starts).clamp(min=1e-6)[:, None]
    src = ((centres[None] - starts[:, None]) / length * in_size - 0.5)
    src = src.clamp(0, in_size - 1)  # (N, out)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=in_size - 1)
    frac = src - lo
    weights = starts.new_zeros(starts.shape[0], out_size, in_size)
    weights.scatter_add_(2, lo[..., None], (1 - frac)[..., None])
    weights.scatter_add_(2, hi[..., None], frac[..., None])
    pixel = torch.arange(out_size, device=starts.device)[None]
    inside = (pixel >= extent_lo[:, None]) & (pixel < extent_hi[:, None])
    return weights * inside[..., None]


def paste_mask_logits(mask_logits: Tensor, boxes: Tensor,
                      size: Tuple[int, int]) -> Tensor:
    """Paste raw ``(N, M, M)`` mask logits into zero ``(N, H, W)`` maps.

    Each ``Y_i`` is bilinearly resized to its box (as ``F.interpolate`` with
    ``align_corners=False`` would) and is zero outside :func:`box_extents`.
    Bilinear resizing is separable, so the paste is two batched matmuls
    ``Wy @ Y @ Wx^T`` -- no per-instance loop, no ``(N, H, W, 2)`` sampling
    grid.  mmdet's ``_do_paste_mask`` samples with zero padding, which fades
    the border of the mask towards logit 0; raw logits enter a sum here, so
    the border is edge-clamped instead.
    """
    _, w_y, w_x = _paste_weights(mask_logits, boxes, size)
    return w_y @ mask_logits @ w_x.transpose(1, 2)  # (N, H, W)


def _paste_weights(mask_logits: Tensor, boxes: Tensor,
                   size: Tuple[int, int]) -> Tuple[Tensor, Tensor, Tensor]:
    """Box extents ``(N, 4)`` and the separable resize matrices ``Wy``
    ``(N, H, M)`` and ``Wx`` ``(N, W, M)`` of :func:`paste_mask_logits`."""
    _, m_h, m_w = mask_logits.shape
    h, w = size
    boxes = boxes.to(mask_logits.dtype)
    ext = box_extents(boxes, size)
    w_y = _bilinear_weights(boxes[:, 1], boxes[:, 3], ext[:, 1], ext[:, 3],
                            m_h, h).to(mask_logits.dtype)  # (N, H, M)
    w_x = _bilinear_weights(boxes[:, 0], boxes[:, 2], ext[:, 0], ext[:, 2],
                            m_w, w).to(mask_logits.dtype)  # (N, W, M)
    return ext, w_y, w_x


def paste_mask_crops(mask_logits: Tensor, boxes: Tensor,
                     size: Tuple[int, int]) -> Tuple[Tensor, List[Tensor]]:
    """:func:`paste_mask_logits` without the zeros: each ``Y_mask_i`` only
    inside its :func:`box_extents`.

    Returns:
        tuple: extents ``(N, 4)`` and N crops, crop ``i`` of shape
        ``(y1 - y0, x1 - x0)`` -- ``paste_mask_logits(...)[i, y0:y1, x0:x1]``.
        Memory and time scale with the boxes' areas, not ``N * H * W``.
    """
    ext, w_y, w_x = _paste_weights(mask_logits, boxes, size)
    crops = [
        w_y[i, y0:y1] @ mask_logits[i] @ w_x[i, x0:x1].T  # (h_i, w_i)
        for i, (x0, y0, x1, y1) in enumerate(ext.tolist())
    ]
    return ext, crops


def first_box_not_covering(extents: Tensor, size: Tuple[int, int]) -> Tensor:
    """``(H, W)``: the smallest ``i`` whose box does not contain the pixel,
    ``N`` if every box does.

    The pixels inside boxes ``0..k`` form a rectangle (an intersection of
    rectangles), so this is N rectangle fills at most -- no ``(N, H, W)``.
    """
    first = extents.new_zeros(size)
    x0, y0, x1, y1 = 0, 0, size[1], size[0]
    for k, (bx0, by0, bx1, by1) in enumerate(extents.tolist()):
        x0, y0, x1, y1 = max(x0, bx0), max(y0, by0), min(x1, bx1), min(
            y1, by1)
        if x0 >= x1 or y0 >= y1:
            break
        first[y0:y1, x0:x1] = k + 1
    return first


def channel_max(x: Tensor) -> Tuple[Tensor, Tensor]:
    """``x.max(0)`` of a ``(C, H, W)`` map: values and first max indices.

    On CPU, ``torch.max(dim=0)`` with indices is several times slower than
    the values alone (timings in ``docs/upsnet.md``); a running max over the
    channels, one vectorised pass each, gives the same indices (the first
    maximum: only a strictly larger value moves it) faster.  Other devices
    keep ``torch.max``.  (A NaN logit does not propagate here.)
    """
    if x.device.type != 'cpu' or x.shape[0] == 0:
        return x.max(0)
    best = x[0].clone()
    index = torch.zeros(x.shape[1:], dtype=torch.int32)  # int64 fills slower
    for c in range(1, x.shape[0]):
        index.masked_fill_(x[c] > best, c)
        torch.maximum(best, x[c], out=best)
    return best, index.long()


def box_masks(boxes: Tensor, size: Tuple[int, int]) -> Tensor:
    """``(N, H, W)`` bool: the pixels of :func:`box_extents`."""
    ext = box_extents(boxes, size)
    ys = torch.arange(size[0], device=boxes.device)
    xs = torch.arange(size[1], device=boxes.device)
    rows = (ys[None] >= ext[:, 1:2]) & (ys[None] < ext[:, 3:4])  # (N, H)
    cols = (xs[None] >= ext[:, 0:1]) & (xs[None] < ext[:, 2:3])  # (N, W)
    return rows[:, :, None] & cols[:, None, :]
