# UPSNet R-50-FPN on Cityscapes panoptic (8 things + 11 stuff), the authors'
# Cityscapes recipe: 2-layer semantic head (256-128-128), w_sem 1.0, no RoI
# semantic loss, w_pan 0.5, stuff area limit 2048; 12k iterations at batch
# 16, lr 0.02, x0.1 at 9k, 1500 warmup iterations from 0.1x.
_base_ = [
    '../_base_/models/upsnet_r50_fpn.py',
    '../_base_/datasets/cityscapes_panoptic.py',
    '../_base_/default_runtime_mmdet.py',
]
custom_imports = dict(imports=['segext'], allow_failed_imports=False)
default_scope = 'mmdet'
# draws meta-less checkpoints' results too (fallback palette + warning)
visualizer = dict(type='RobustDetLocalVisualizer')

num_things_classes = 8
num_stuff_classes = 11

model = dict(
    roi_head=dict(
        bbox_head=dict(num_classes=num_things_classes),
        mask_head=dict(num_classes=num_things_classes)),
    semantic_head=dict(
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        feat_channels=(128, 128),  # 2 deformable convs 256-128-128
        loss_seg=dict(loss_weight=1.0),
        loss_roi_seg=None),
    panoptic_fusion_head=dict(
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        loss_panoptic=dict(loss_weight=0.5)),
    test_cfg=dict(panoptic=dict(stuff_area_limit=2048)))

# the dataset base already has the authors' scales: train short side
# 800..1024 (long <= 2048) with flip, test at 1024

# 12k iterations at total batch 16 (8 GPUs x 2 images)
max_iters = 12000
train_cfg = dict(
    type='ExactResumeIterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=2000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=1500),
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[9000],
        gamma=0.1)
]
# as on COCO, the authors train biases at 2x lr without weight decay
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001),
    paramwise_cfg=dict(bias_lr_mult=2.0, bias_decay_mult=0.0))
auto_scale_lr = dict(enable=False, base_batch_size=16)

default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', by_epoch=False, interval=2000))
log_processor = dict(by_epoch=False)

# mmdet's NumClassCheckHook does not know panoptic heads (as Panoptic FPN)
custom_hooks = [
    dict(type='RNGStateHook'),  # bit-identical --resume
    dict(type='NonFiniteCheckHook'),  # stop on NaN/inf, never save it
]
