"""post_processing: greedy same-class mask pruning (the stuff-majority and
small-stuff rules are tested through the head's predict, in
test_upsnet_panoptic_head.py)."""
import torch

from segext.models.panoptic_fusion_heads.mask_paste import box_extents
from segext.models.panoptic_fusion_heads.post_processing import prune_masks

MASK_OVERLAP = 0.3  # the head's default test_cfg['mask_overlap']


def test_same_class_overlap_pruning():
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[0, 0:6, 0:6] = True
    masks[1, 1:7, 1:7] = True  # 25 / 36 of it taken by mask 0
    masks[2, 1:7, 1:7] = True
    boxes = torch.tensor([[0., 0., 6., 6.], [1., 1., 7., 7.], [1., 1., 7.,
                                                                7.]])
    ext = box_extents(boxes, (8, 8))

    def prune(labels):
        crops = [m[y0:y1, x0:x1] for m, (x0, y0, x1, y1) in zip(
            masks, ext.tolist())]
        return prune_masks(crops, torch.tensor(labels), ext, (8, 8),
                           MASK_OVERLAP).tolist()

    # same class -> pruned; another class -> kept
    assert prune([0, 0, 1]) == [0, 2]
    # a small same-class overlap (<= 30%) is kept
    masks[1] = False
    masks[1, 5:8, 5:8] = True  # inside its box: 1 of 4 pixels taken
    assert prune([0, 0, 0]) == [0, 1]
    # an empty mask is dropped
    masks[1] = False
    assert prune([0, 0, 1]) == [0, 2]
