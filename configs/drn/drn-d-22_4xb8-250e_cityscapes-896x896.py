# DRN-D-22 on Cityscapes with the DRN authors' recipe (github.com/fyu/drn,
# segment.py / README): ImageNet-pretrained backbone, random 896x896 crops of
# the full-resolution images + horizontal flip (no scaling, no photometric
# distortion), the authors' Cityscapes mean/std, SGD lr 0.01 momentum 0.9
# wd 1e-4, 32 crops per iteration, 250 epochs with lr x0.1 every 100 epochs,
# whole-image (1024x2048) testing.  Paper (Table 4): 68.0 mIoU on val.
#
# ImageNet weights: convert the authors' checkpoint first,
#   python tools/model_converters/drn2segext.py drn_d_22-4bd2f8ea.pth \
#       checkpoints/drn-d-22_imagenet.pth
_base_ = [
    '../_base_/models/drn.py',
    'mmseg::_base_/datasets/cityscapes.py',
    '../_base_/default_runtime_mmseg.py',
]
custom_imports = dict(imports=['segext'], allow_failed_imports=False)
default_scope = 'mmseg'
# draws meta-less checkpoints' results too (fallback palette + warning)
visualizer = dict(type='RobustSegLocalVisualizer')

crop_size = (896, 896)
data_preprocessor = dict(
    size=crop_size,
    # the authors' Cityscapes statistics (datasets/cityscapes/info.json:
    # mean 0.2901, 0.3281, 0.2870, std 0.1830, 0.1866, 0.1845, RGB) x 255
    mean=[73.977, 83.661, 73.176],
    std=[46.653, 47.574, 47.041])
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        arch='D',
        depth=22,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/drn-d-22_imagenet.pth')),
    decode_head=dict(num_classes=19))

train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='CheckedLoadAnnotations'),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
# 4 GPUs x 8 crops = the authors' batch of 32; one epoch = 2975 // 32 = 92
# iterations (their loader drops the last partial batch).
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=True),
    drop_last=True,
    dataset=dict(pipeline=train_pipeline))

# optimizer: SGD on every parameter (the up-conv is a buffer, not one)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
    clip_grad=None)
# lr = 0.01 * 0.1 ** (epoch // 100), set once per epoch as the authors
param_scheduler = [
    dict(
        type='MultiStepLR',
        by_epoch=True,
        begin=0,
        end=250,
        milestones=[100, 200],
        gamma=0.1)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=250, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=True),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='SafeCheckpointHook',
        by_epoch=True,
        interval=10,
        max_keep_ckpts=3,
        save_best='mIoU'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
log_processor = dict(by_epoch=True)
# lr 0.01 is for 32 crops per iteration: `--auto-scale-lr` rescales it
auto_scale_lr = dict(enable=False, base_batch_size=32)
custom_hooks = [
    dict(type='RNGStateHook'),  # bit-identical --resume
    dict(type='NonFiniteCheckHook'),  # stop on NaN/inf, never save it
]
