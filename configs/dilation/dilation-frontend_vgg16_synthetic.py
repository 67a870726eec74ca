# Toy: the dilated VGG-16 front-end (Yu & Koltun, ICLR 2016, Sec. 4) on
# segext's synthetic semantic data (6 classes, 256x192), CPU-sized; stage 1
# of dilation-large-context_vgg16_synthetic.py.
#
# Reduced widths (conv1 16 instead of 64 channels, fc6/fc7 128 instead of
# 4096: 1/77 of the parameters; same depth, dilations and output stride 8),
# trained from scratch; same data, schedule length and batch as the DRN toys
# (configs/drn/drn-d-22*_synthetic.py).
_base_ = [
    '../_base_/models/dilation_vgg16.py',
    '../_base_/datasets/synthetic_semantic.py',
    '../_base_/default_runtime_mmseg.py'
]
custom_imports = dict(imports=['segext'], allow_failed_imports=False)
default_scope = 'mmseg'
# draws meta-less checkpoints' results too (fallback palette + warning)
visualizer = dict(type='RobustSegLocalVisualizer')

crop_size = (192, 256)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(base_channels=16, fc_channels=128),
    decode_head=dict(in_channels=128, num_classes=6))

max_iters = 300
train_cfg = dict(
    type='ExactResumeIterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=0.9, eta_min=1e-4, by_epoch=False, begin=50,
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
auto_scale_lr = dict(enable=False, base_batch_size=2)
randomness = dict(seed=0)
custom_hooks = [
    dict(type='RNGStateHook'),  # bit-identical --resume
    dict(type='NonFiniteCheckHook'),  # stop on NaN/inf, never save it
]
