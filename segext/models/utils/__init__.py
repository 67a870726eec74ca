"""Helpers shared by segext's heads (no registry entries)."""
from .labels import (IGNORE_INDEX, crop_and_resize_labels, masks_to_grid,
                     resize_labels_nearest, stack_gt_sem_seg)

__all__ = [
    'IGNORE_INDEX', 'stack_gt_sem_seg', 'resize_labels_nearest',
    'crop_and_resize_labels', 'masks_to_grid'
]
