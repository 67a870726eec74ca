"""Label-map helpers shared by the semantic and panoptic heads.

Label maps are integer ``(..., H, W)`` tensors in mmdet's panoptic order
(things ``0..T-1``, stuff ``T..T+S-1``, ``255`` ignored); every helper keeps
the dtype and samples nearest, so labels are never blended.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.structures import SampleList
from torch import Tensor

__all__ = [
    'IGNORE_INDEX', 'stack_gt_sem_seg', 'resize_labels_nearest',
    'crop_and_resize_labels', 'masks_to_grid'
]

IGNORE_INDEX = 255


def stack_gt_sem_seg(batch_data_samples: SampleList,
                     pad_shape: Optional[Tuple[int, int]] = None,
                     pad_value: int = 255) -> Tensor:
    """Stack the ``gt_sem_seg`` label maps of a batch into ``(B, H, W)``.

    Each map is padded (bottom/right, with ``pad_value``) to ``pad_shape``, by
    default the samples' ``batch_input_shape``, so the result is aligned with
    the padded input batch whether or not the data preprocessor was told to
    ``pad_seg``.
    """
    segs = []
    for i, sample in enumerate(batch_data_samples):
        if 'gt_sem_seg' not in sample:
            raise KeyError(
                f'data sample {i} has no `gt_sem_seg`; UPSNet needs the '
                'semantic label map (LoadPanopticAnnotations with_seg=True)')
        segs.append(sample.gt_sem_seg.sem_seg.squeeze(0).long())
    if pad_shape is None:
        pad_shape = batch_data_samples[0].metainfo.get(
            'batch_input_shape',
            tuple(max(sizes) for sizes in zip(*[seg.shape for seg in segs])))
    padded = []
    for seg in segs:
        dh, dw = pad_shape[0] - seg.shape[0], pad_shape[1] - seg.shape[1]
        if dh < 0 or dw < 0:
            raise ValueError(
                f'gt_sem_seg of shape {tuple(seg.shape)} is larger than the '
                f'batch input shape {tuple(pad_shape)}')
        padded.append(F.pad(seg, (0, dw, 0, dh), value=pad_value))
    return torch.stack(padded)


def resize_labels_nearest(labels: Tensor, size: Tuple[int, int]) -> Tensor:
    """Nearest resize of integer/bool maps ``(..., H, W)`` to ``size``.

    Same sampling as ``F.interpolate(mode='nearest')`` (source index
    ``floor(i * H / h)``) but by indexing, so it keeps the dtype and never
    materialises a float copy of the full-resolution maps.
    """
    in_h, in_w = labels.shape[-2:]
    ys = (torch.arange(size[0], device=labels.device) * in_h // size[0])
    xs = (torch.arange(size[1], device=labels.device) * in_w // size[1])
    return labels[..., ys[:, None], xs[None, :]]


def crop_and_resize_labels(labels: Tensor, rois: Tensor,
                           out_size: int) -> Tensor:
    """Crop label maps to RoIs and resize to ``out_size`` (nearest).

    Args:
        labels (Tensor): ``(B, H, W)`` label maps.
        rois (Tensor): ``(R, 5)`` as ``(batch_idx, x1, y1, x2, y2)`` in the
            label maps' pixel frame.
        out_size (int): side of the square output.

    Returns:
        Tensor: ``(R, out_size, out_size)``, the label under the centre of
        each output bin (the points RoIAlign samples).
    """
    h, w = labels.shape[-2:]
    centres = (torch.arange(out_size, device=rois.device) + 0.5) / out_size
    x1, y1, x2, y2 = rois[:, 1:].unbind(1)
    xs = x1[:, None] + centres[None] * (x2 - x1)[:, None]  # (R, S)
    ys = y1[:, None] + centres[None] * (y2 - y1)[:, None]  # (R, S)
    xs = xs.floor().long().clamp(0, w - 1)
    ys = ys.floor().long().clamp(0, h - 1)
    img = rois[:, 0].long()
    return labels[img[:, None, None], ys[:, :, None], xs[:, None, :]]


def masks_to_grid(masks, pad_shape: Tuple[int, int], size: Tuple[int, int],
                   device: torch.device) -> Tensor:
    """GT instance masks (``BitmapMasks``/``PolygonMasks``/tensor, at input
    resolution, padded or not) sampled nearest onto the ``size`` grid of the
    padded batch ``pad_shape``; ``(N, h, w)`` bool on ``device``."""
    if isinstance(masks, Tensor):
        masks = masks.bool()
    else:
        masks = torch.from_numpy(masks.to_ndarray()).bool()
    num, mask_h, mask_w = masks.shape
    if (mask_h, mask_w) != tuple(pad_shape):
        # unpadded masks: pad (with background) up to the batch shape
        if mask_h > pad_shape[0] or mask_w > pad_shape[1]:
            raise ValueError(f'gt masks of shape {(mask_h, mask_w)} are '
                             f'larger than the batch input shape {pad_shape}')
        padded = masks.new_zeros(num, *pad_shape)
        padded[:, :mask_h, :mask_w] = masks
        masks = padded
    return resize_labels_nearest(masks, size).to(device)
