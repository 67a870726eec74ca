# DRN-D-22 + DRNHead (Yu, Koltun, Funkhouser, CVPR 2017) on CamVid, 11
# classes at 360x480, with SegNet's CamVid protocol so the two compare:
#   * data, split and budget of configs/segnet/segnet_vgg16-bn_1xb4-40k_
#     camvid-360x480.py: batch 4 on 1 device, 40k iterations, full 360x480
#     images, void ignored, median-frequency-balanced cross entropy with
#     SegNet-Tutorial's weights (the DRN paper has no CamVid experiment);
#   * the DRN authors' training otherwise (github.com/fyu/drn, segment.py):
#     ImageNet-pretrained backbone (convert it first:
#       python tools/model_converters/drn2segext.py drn_d_22-4bd2f8ea.pth \
#           checkpoints/drn-d-22_imagenet.pth
#     or train from scratch: --cfg-options model.backbone.init_cfg=None),
#     random horizontal flip, SGD lr 0.01, momentum 0.9, weight decay 1e-4,
#     lr x0.1 at 40% and 80% of training (their "every 100 of 250 epochs").
# Stage 1 of the context-module recipe: drn-d-22-context_1xb4-40k_camvid-
# 360x480.py trains the module on top of this model.
_base_ = [
    '../_base_/models/drn.py', '../_base_/datasets/camvid.py',
    '../_base_/default_runtime_mmseg.py',
    'mmseg::_base_/schedules/schedule_40k.py'
]
custom_imports = dict(imports=['segext'], allow_failed_imports=False)
default_scope = 'mmseg'

crop_size = (360, 480)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='D',
        depth=22,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/drn-d-22_imagenet.pth')),
    decode_head=dict(
        num_classes=11,
        loss_decode=dict(
            _delete_=True,
            type='WeightedCrossEntropyLoss',
            class_weight={{_base_.camvid_class_weight}},
            loss_weight=1.0)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
    clip_grad=None)
param_scheduler = [
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=40000,
        milestones=[16000, 32000],
        gamma=0.1)
]
auto_scale_lr = dict(enable=False, base_batch_size=4)

# segext's runtime pieces (as every segext config): bit-identical --resume,
# atomic checkpoints loadable with weights_only=True, a stop on NaN/inf, and
# a visualiser that falls back when a checkpoint carries no dataset_meta
train_cfg = dict(type='ExactResumeIterBasedTrainLoop')
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
custom_hooks = [dict(type='RNGStateHook'), dict(type='NonFiniteCheckHook')]
visualizer = dict(type='RobustSegLocalVisualizer')
