# Panoptic FPN (Kirillov et al. 2019) exactly as mmdet builds it, with a
# ResNet-18 FPN trained from scratch on segext's synthetic panoptic dataset:
# the side-by-side baseline of the README's main job.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
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
num_classes = num_things_classes + num_stuff_classes

model = dict(
    type='PanopticFPN',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32,
        pad_mask=True,
        mask_pad_value=0,
        pad_seg=True,
        seg_pad_value=255),
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
            num_classes=num_things_classes),
        mask_roi_extractor=dict(out_channels=128),
        mask_head=dict(
            in_channels=128,
            conv_out_channels=128,
            num_classes=num_things_classes)),
    semantic_head=dict(
        type='PanopticFPNHead',
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        in_channels=128,
        inner_channels=64,
        start_level=0,
        end_level=4,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        conv_cfg=None,
        loss_seg=dict(
            type='CrossEntropyLoss', ignore_index=255, loss_weight=0.5)),
    panoptic_fusion_head=dict(
        type='HeuristicFusionHead',
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
        # images are 256x192: the COCO limit of 4096 px would drop real stuff
        panoptic=dict(mask_overlap=0.5, stuff_area_limit=256)))

# iteration-based logging/checkpoints for the short toy schedule
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100,
                    max_keep_ckpts=2),
    # --show-dir overlays as lossless PNG (the images are JPEG, as COCO's)
    visualization=dict(type='PNGDetVisualizationHook'))
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=False)

# mmdet's NumClassCheckHook expects COCO class counts: drop it as upstream does.
custom_hooks = []
