# UPSNet with a ResNet-18 FPN trained from scratch on segext's synthetic
# panoptic dataset: the side-by-side partner of
# configs/panoptic_fpn/panoptic-fpn_r18_fpn_synthetic.py.  Same dataset,
# schedule, backbone, neck, RPN and RoI settings as that baseline, so PQ is
# compared at equal budget; only the semantic and panoptic heads differ.
_base_ = [
    '../_base_/models/upsnet_r50_fpn.py',
    '../_base_/datasets/synthetic_panoptic.py',
    '../_base_/schedules/schedule_synthetic_panoptic.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['segext'], allow_failed_imports=False)
default_scope = 'mmdet'
# draws meta-less checkpoints' results too (fallback palette + warning)
visualizer = dict(type='RobustDetLocalVisualizer')

num_things_classes = 3  # disk, box, triangle
num_stuff_classes = 3  # sky, grass, sand

model = dict(
    # as the baseline: no ImageNet weights offline, BN statistics learnt, and
    # the same slim 128-ch FPN / RoI heads
    backbone=dict(
        depth=18, frozen_stages=-1, norm_eval=False, init_cfg=None),
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
            num_classes=num_things_classes),
        mask_roi_extractor=dict(out_channels=128),
        mask_head=dict(
            in_channels=128,
            conv_out_channels=128,
            num_classes=num_things_classes)),
    # the paper's head at half width (128-64-64 on the 128-ch FPN, 256-ch
    # concat), as the baseline's semantic head is halved too (128 -> 64)
    semantic_head=dict(
        in_channels=128,
        feat_channels=(128, 64, 64),
        roi_extractor=dict(out_channels=256),
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes),
    panoptic_fusion_head=dict(
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes),
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
            mask_thr_binary=0.5),
        # 256x192 images: COCO's 4096 px limit would drop real stuff
        panoptic=dict(
            mask_overlap=0.3, stuff_area_limit=256, stuff_majority_thr=0.5)))

# iteration-based logging/checkpoints for the short toy schedule
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=100,
        max_keep_ckpts=2),
    # --show-dir overlays as lossless PNG (the images are JPEG, as COCO's)
    visualization=dict(type='PNGDetVisualizationHook'))
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=False)

# mmdet's NumClassCheckHook does not know panoptic heads (as Panoptic FPN)
custom_hooks = []
