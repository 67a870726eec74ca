# Toy: the DRN authors' segmentation model with DRN-D-22's levels on
# segext's synthetic semantic data (6 classes, 256x192), trained from scratch
# on CPU in a couple of minutes.
#
# Reduced widths: levels 1-8 have (16, 32, 32, 64, 64, 128, 128, 128)
# channels instead of (16, 32, 64, 128, 256, 512, 512, 512) -- 1/14 of the
# parameters, the same levels, layer counts, strides, dilations (2, 4, then
# degridding 2, 1) and output stride 8.  Not the paper's DRN-D-22.
_base_ = [
    '../_base_/models/drn.py',
    '../_base_/datasets/synthetic_semantic.py',
    '../_base_/default_runtime_mmseg.py'
]
custom_imports = dict(imports=['segext'], allow_failed_imports=False)
default_scope = 'mmseg'
# draws meta-less checkpoints' results too (fallback palette + warning)
visualizer = dict(type='RobustSegLocalVisualizer')

crop_size = (192, 256)
# SyncBN from the base: a single-process run reverts it to BN (mmengine),
# `tools/dist_train.sh ... 2` synchronises it (docs/distributed.md)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='D',
        depth=22,
        channels=(16, 32, 32, 64, 64, 128, 128, 128)),
    decode_head=dict(in_channels=128, num_classes=6))

max_iters = 300
train_cfg = dict(
    type='ExactResumeIterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# the authors' SGD (momentum 0.9, wd 1e-4) and poly lr, with a short warm-up
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
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
