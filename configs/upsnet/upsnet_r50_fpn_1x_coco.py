# UPSNet R-50-FPN, COCO panoptic 2017, the authors' 90k-iteration schedule as
# mmdet's 1x (12 epochs at batch 16 ~ 88k iterations, lr x0.1 after epochs 8
# and 11 ~ iterations 59k / 81k vs. the authors' 60k / 80k).
_base_ = [
    '../_base_/models/upsnet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_panoptic.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime_mmdet.py',
]

custom_imports = dict(imports=['segext'], allow_failed_imports=False)
default_scope = 'mmdet'
# draws meta-less checkpoints' results too (fallback palette + warning)
visualizer = dict(type='RobustDetLocalVisualizer')

# the authors: 1500 warmup iterations from 0.1 x lr (mmdet's 1x: 500 from
# 0.001 x), then steps at epochs 8 and 11
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=1500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=12,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1)
]

# SGD lr 0.02 at total batch 16 (8 GPUs x 2 images), momentum 0.9, wd 1e-4
# the authors also train biases at 2x lr without weight decay
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001),
    paramwise_cfg=dict(bias_lr_mult=2.0, bias_decay_mult=0.0))
auto_scale_lr = dict(enable=False, base_batch_size=16)

# mmdet's NumClassCheckHook does not know panoptic heads (as Panoptic FPN)
custom_hooks = [
    dict(type='RNGStateHook'),  # bit-identical --resume
    dict(type='NonFiniteCheckHook'),  # stop on NaN/inf, never save it
]

# the stock COCO panoptic metric, minus its in-place edit of CPU predictions
# (VOID drawn as class 0 in --show-dir overlays and --out dumps otherwise)
val_evaluator = dict(type='NonMutatingCocoPanopticMetric')
test_evaluator = val_evaluator
