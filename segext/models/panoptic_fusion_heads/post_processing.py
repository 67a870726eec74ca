"""Post-processing of UPSNet's panoptic argmax (Xiong et al., CVPR 2019,
Sec. 3.3, inference), kept apart from the panoptic logits as detectron2's
Panoptic-DeepLab keeps ``post_processing.py``:

* :func:`prune_masks` -- greedy: drop empty masks and masks mostly covered
  by higher-scoring masks of the same class (before the argmax);
* :func:`stuff_majority` -- an instance whose pixels are mostly a stuff class
  in the semantic argmax becomes that stuff;
* :func:`void_small_stuff` -- stuff segments below an area limit become VOID.

Labels follow mmdet's panoptic order (things ``0..T-1``, stuff ``T..T+S-1``,
VOID ``T+S``); the argmax map indexes ``[stuff, instances, unknown]``.
"""
from typing import Dict, List, Tuple

import torch
from torch import Tensor

__all__ = ['prune_masks', 'stuff_majority', 'void_small_stuff']


def prune_masks(masks: List[Tensor], labels: Tensor, extents: Tensor,
                size: Tuple[int, int], overlap_thr: float) -> Tensor:
    """Greedy mask pruning, masks sorted by decreasing score.

    A mask is dropped when it is empty or when more than ``overlap_thr`` of
    its pixels are already taken by kept masks of the SAME class.  The
    union of kept masks makes this sequential; each step only touches the
    mask's box.

    Args:
        masks (list[Tensor]): N bool binarised masks, mask ``i`` cropped
            to its extent (``(y1 - y0, x1 - x0)``).
        labels (Tensor): ``(N, )`` classes.
        extents (Tensor): ``(N, 4)`` integer box extents.
        size (tuple[int]): the image ``(H, W)``.
        overlap_thr (float): the test config's ``mask_overlap``.

    Returns:
        Tensor: indices of the kept masks, in input order.
    """
    taken: Dict[int, Tensor] = {}  # class -> (H, W) union of kept masks
    keep = []
    for i, (label, (x0, y0, x1, y1)) in enumerate(
            zip(labels.tolist(), extents.tolist())):
        mask = masks[i]
        area = int(mask.sum())
        if area == 0:
            continue
        if label not in taken:
            taken[label] = mask.new_zeros(size)
        taken_crop = taken[label][y0:y1, x0:x1]
        if int((mask & taken_crop).sum()) > overlap_thr * area:
            continue
        taken_crop |= mask
        keep.append(i)
    return torch.tensor(keep, dtype=torch.long, device=labels.device)


def stuff_majority(pan: Tensor, sem: Tensor, num_inst: int, num_things: int,
                   num_stuff: int, thr: float) -> Tuple[Tensor, Tensor]:
    """For each instance segment, whether the semantic argmax inside it is
    a stuff class for at least ``thr`` of its pixels, and that class.  One
    ``bincount`` over (instance, class) pairs.

    Args:
        pan (Tensor): ``(H, W)`` panoptic argmax (``[stuff, instances,
            unknown]`` indices).
        sem (Tensor): ``(H, W)`` semantic argmax (class labels).

    Returns:
        tuple[Tensor]: ``(N, )`` bool "relabel" and ``(N, )`` majority class.
    """
    num_classes = num_things + num_stuff
    is_inst = (pan >= num_stuff) & (pan < num_stuff + num_inst)
    pairs = (pan[is_inst] - num_stuff) * num_classes + sem[is_inst]
    counts = torch.bincount(
        pairs, minlength=num_inst * num_classes).view(
            num_inst, num_classes)  # (N, T+S)
    top_count, top_class = counts.max(1)
    area = counts.sum(1)
    relabel = (top_class >= num_things) & (area > 0) & (
        top_count >= thr * area)
    return relabel, top_class


def void_small_stuff(label_map: Tensor, num_things: int, num_classes: int,
                     area_limit: int) -> Tensor:
    """Stuff classes covering fewer than ``area_limit`` pixels of the image
    become VOID (``num_classes``)."""
    is_stuff = (label_map >= num_things) & (label_map < num_classes)
    area = torch.bincount(label_map[is_stuff], minlength=num_classes + 1)
    too_small = area < area_limit
    return torch.where(is_stuff & too_small[label_map], num_classes,
                       label_map)
