# UPSNet with a ResNet-18 FPN trained from scratch on segext's synthetic
# panoptic dataset: the side-by-side partner of
# configs/panoptic_fpn/panoptic-fpn_r18_fpn_synthetic.py.  Dataset, schedule,
# backbone, neck, RPN and RoI settings come from the shared toy base, so PQ
# is compared at equal budget; only the semantic and panoptic heads differ.
_base_ = [
    '../_base_/models/upsnet_r50_fpn.py',
    '../_base_/toy_panoptic_r18_fpn_synthetic.py',
]
custom_imports = dict(imports=['segext'], allow_failed_imports=False)
default_scope = 'mmdet'

num_things_classes = 3  # disk, box, triangle
num_stuff_classes = 3  # sky, grass, sand

model = dict(
    _base_.toy_r18_fpn,
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
        num_stuff_classes=num_stuff_classes))
model['test_cfg'] = dict(
    model['test_cfg'],
    # 256x192 images: COCO's 4096 px limit would drop real stuff
    panoptic=dict(
        mask_overlap=0.3, stuff_area_limit=256, stuff_majority_thr=0.5))

# iteration-based logging/checkpoints for the short toy schedule
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=100,
        max_keep_ckpts=2),
    # --show-dir overlays as lossless PNG (the images are JPEG, as COCO's)
    visualization=dict(type='PNGDetVisualizationHook'))
