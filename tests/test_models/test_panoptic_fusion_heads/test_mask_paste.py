"""mask_paste: RoI mask logits pasted into their boxes (the full maps of
training and the crops of inference agree), box extents."""
import torch
import torch.nn.functional as F

from segext.models.panoptic_fusion_heads.mask_paste import (
    box_extents, paste_mask_crops, paste_mask_logits)


def test_paste_mask_logits_is_bilinear_resize_into_zeros():
    torch.manual_seed(0)
    logits = torch.randn(1, 28, 28, requires_grad=True)
    box = torch.tensor([[2., 3., 9., 7.]])  # x1, y1, x2, y2
    pasted = paste_mask_logits(logits, box, (12, 12))
    expected = torch.zeros(12, 12)
    expected[3:7, 2:9] = F.interpolate(
        logits[None].detach(),
        size=(4, 7),
        mode='bilinear',
        align_corners=False)[0, 0]
    assert pasted.shape == (1, 12, 12)
    torch.testing.assert_close(pasted[0], expected, atol=1e-5, rtol=1e-5)
    pasted.sum().backward()
    assert logits.grad.abs().sum() > 0


def test_box_extents_cover_touched_pixels_and_clip():
    ext = box_extents(
        torch.tensor([[0.5, 1.2, 2.5, 1.4], [-3., -3., 20., 20.]]), (8, 8))
    assert ext.tolist() == [[0, 1, 3, 2], [0, 0, 8, 8]]


def test_paste_mask_crops_are_the_pasted_maps_inside_the_boxes():
    torch.manual_seed(0)
    logits = torch.randn(4, 28, 28)
    boxes = torch.tensor([[2., 3., 9., 7.], [0., 0., 12., 12.],
                          [-4., 5.5, 3.2, 30.], [10.5, 1., 10.7, 1.1]])
    full = paste_mask_logits(logits, boxes, (12, 12))
    ext, crops = paste_mask_crops(logits, boxes, (12, 12))
    assert ext.tolist() == box_extents(boxes, (12, 12)).tolist()
    for f, c, (x0, y0, x1, y1) in zip(full, crops, ext.tolist()):
        assert c.shape == (y1 - y0, x1 - x0)
        torch.testing.assert_close(c, f[y0:y1, x0:x1])
        outside = torch.ones_like(f, dtype=torch.bool)
        outside[y0:y1, x0:x1] = False
        assert torch.all(f[outside] == 0)
    ext, crops = paste_mask_crops(logits[:0], boxes[:0], (12, 12))
    assert ext.shape == (0, 4) and crops == []
