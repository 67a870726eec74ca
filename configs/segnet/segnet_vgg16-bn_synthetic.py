# Toy: SegNet's architecture (VGG-16-BN encoder with 2-bit pooling indices,
# mirrored max-unpooling decoder, 3x3 classifier at full resolution) on
# segext's synthetic semantic data (6 classes), trained from scratch on CPU
# in a couple of minutes.
#
# Reduced: stages have (16, 32, 64, 128, 128) channels instead of (64, 128,
# 256, 512, 512) -- 1/16 of the parameters and FLOPs, the same 13 + 13
# convs, BN, 5 compact poolings and unpoolings -- and the 256x192 images are
# used at half size (128x96; evaluated against the full-size labels, as
# mmseg's test pipeline does).  Not the paper's SegNet.
#
#   python tools/dataset_converters/generate_synthetic.py data/synthetic
#   OMP_NUM_THREADS=1 python tools/train.py \
#       configs/segnet/segnet_vgg16-bn_synthetic.py --work-dir work_dirs/x
#
# 600 iterations: ~1.5-2.5 min on a shared 2-core CPU, val mIoU 64.89 (seed
# 0, reproducible; see docs/segnet.md).  One intra-op thread: these maps are
# small, and on a loaded machine two OpenMP threads made each iteration ~30x
# slower (spinning, descheduled threads).
_base_ = [
    '../_base_/models/segnet_vgg16-bn.py',
    '../_base_/datasets/synthetic_semantic.py',
    '../_base_/default_runtime_mmseg.py'
]
custom_imports = dict(imports=['segext'], allow_failed_imports=False)
default_scope = 'mmseg'
# draws meta-less checkpoints' results too (fallback palette + warning)
visualizer = dict(type='RobustSegLocalVisualizer')

crop_size = (96, 128)  # (h, w)
stage_channels = (16, 32, 64, 128, 128)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(stage_channels=stage_channels),
    decode_head=dict(stage_channels=stage_channels, num_classes=6))
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='CheckedLoadAnnotations'),
    dict(type='CheckSegMap', num_classes=6),
    dict(
        type='RandomResize',
        scale=(128, 96),
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
# Test pipelines keep the stock loaders: mmdet's and mmseg's inferencers
# (DetInferencer, MMSegInferencer, inference_model) find and replace them by
# their type names; CheckSegMap still checks every label map.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 96), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='CheckSegMap', num_classes=6),
    dict(type='PackSegInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 600
train_cfg = dict(
    type='ExactResumeIterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# the paper's optimiser (SGD, momentum 0.9, wd 5e-4) with a larger lr and
# poly decay for the short schedule
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', power=0.9, eta_min=1e-4, by_epoch=False, begin=30,
         end=max_iters)
]
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='SafeCheckpointHook', by_epoch=False,
                    interval=max_iters),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(enable=False, base_batch_size=2)
randomness = dict(seed=0)
custom_hooks = [
    dict(type='RNGStateHook'),  # bit-identical --resume
    dict(type='NonFiniteCheckHook'),  # stop on NaN/inf, never save it
]
