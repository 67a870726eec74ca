# Panoptic FPN (Kirillov et al. 2019) exactly as mmdet builds it, with a
# ResNet-18 FPN trained from scratch on segext's synthetic panoptic dataset:
# the side-by-side baseline of the README's main job (shared settings in
# configs/_base_/toy_panoptic_r18_fpn_synthetic.py).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/toy_panoptic_r18_fpn_synthetic.py',
]
custom_imports = dict(imports=['segext'], allow_failed_imports=False)
default_scope = 'mmdet'

num_things_classes = 3  # disk, box, triangle
num_stuff_classes = 3  # sky, grass, sand
num_classes = num_things_classes + num_stuff_classes

model = dict(
    _base_.toy_r18_fpn,
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
        num_stuff_classes=num_stuff_classes))
model['test_cfg'] = dict(
    model['test_cfg'],
    # images are 256x192: the COCO limit of 4096 px would drop real stuff
    panoptic=dict(mask_overlap=0.5, stuff_area_limit=256))

# iteration-based logging/checkpoints for the short toy schedule
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100,
                    max_keep_ckpts=2),
    # --show-dir overlays as lossless PNG (the images are JPEG, as COCO's)
    visualization=dict(type='PNGDetVisualizationHook'))
