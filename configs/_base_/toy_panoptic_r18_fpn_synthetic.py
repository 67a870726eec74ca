# What the two toy panoptic configs of the main job share, so that they are
# compared at equal budget: segext's synthetic panoptic dataset, the short
# schedule, mmdet's runtime, and a slim Mask R-CNN from scratch (ResNet-18,
# 128-ch FPN and RoI heads) in `toy_r18_fpn`, which
# configs/upsnet/upsnet_r18_fpn_synthetic.py and
# configs/panoptic_fpn/panoptic-fpn_r18_fpn_synthetic.py put into their
# `model`. Only their semantic and panoptic heads differ.
_base_ = [
    './datasets/synthetic_panoptic.py',
    './schedules/schedule_synthetic_panoptic.py',
    'mmdet::_base_/default_runtime.py',
]

toy_r18_fpn = dict(
    # No network here, so no ImageNet weights: train from scratch, with BN
    # statistics learnt (batch 2 at 256x192).  A slim toy: 128-ch FPN and
    # RoI heads (the 256/1024-ch COCO sizes cost 3x the time per step and
    # the synthetic scenes do not need them), so the main job runs in minutes.
    backbone=dict(
        depth=18,
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=128),
    rpn_head=dict(
        in_channels=128,
        feat_channels=128,
        anchor_generator=dict(scales=[4], ratios=[0.5, 1.0, 2.0])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=128),
        bbox_head=dict(
            in_channels=128,
            fc_out_channels=512,
            num_classes=3),  # disk, box, triangle
        mask_roi_extractor=dict(out_channels=128),
        mask_head=dict(
            in_channels=128,
            conv_out_channels=128,
            num_classes=3)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=1000, max_per_img=500),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(
            # an undertrained toy model is less confident than a COCO one
            score_thr=0.4,
            nms=dict(type='nms', iou_threshold=0.5, class_agnostic=True),
            max_per_img=50,
            mask_thr_binary=0.5)))

log_processor = dict(type='LogProcessor', window_size=20, by_epoch=False)

# mmdet's NumClassCheckHook does not know panoptic heads: drop it, as
# upstream's panoptic configs do
custom_hooks = []
