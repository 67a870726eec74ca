# UPSNet (Xiong et al., CVPR 2019): mmdet's Mask R-CNN R-50-FPN + the
# deformable semantic head + the parameter-free panoptic head.  COCO panoptic
# defaults (80 things + 53 stuff); dataset configs override the class counts.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'

custom_imports = dict(imports=['segext'], allow_failed_imports=False)

num_things_classes = 80
num_stuff_classes = 53

model = dict(
    type='UPSNet',
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
    semantic_head=dict(
        type='UPSNetSemanticHead',
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        in_channels=256,
        feat_channels=(256, 128, 128),  # 3 deformable convs 256-256-128-128
        num_levels=4,  # P2-P5
        conv_cfg=dict(type='DCNv1'),
        norm_cfg=None,
        roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=28, sampling_ratio=0),
            out_channels=512,
            featmap_strides=[4]),
        # L_sem: mean over labelled pixels (torch's CE, as the authors)
        loss_seg=dict(
            type='CrossEntropyLoss',
            ignore_index=255,
            avg_non_ignore=True,
            loss_weight=0.2),
        # L_sem_roi: weight 0.2 * w_sem, mean over all RoI pixels (authors)
        loss_roi_seg=dict(
            type='CrossEntropyLoss', ignore_index=255, loss_weight=0.04)),
    panoptic_fusion_head=dict(
        type='UPSNetPanopticHead',
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        keep_fraction=0.7,
        # L_pan: mean over all pixels (authors)
        loss_panoptic=dict(
            type='CrossEntropyLoss', ignore_index=255, loss_weight=0.1)),
    test_cfg=dict(
        # panoptic detections: score >= 0.6, class-agnostic NMS 0.5, top 100
        rcnn=dict(
            score_thr=0.6,
            nms=dict(type='nms', iou_threshold=0.5, class_agnostic=True),
            max_per_img=100,
            mask_thr_binary=0.5),
        panoptic=dict(
            mask_overlap=0.3, stuff_area_limit=4096, stuff_majority_thr=0.5)))
