# Stock mmseg baseline on CamVid: mmseg's own FCN on ResNet-18-D8
# (mmseg::fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py: ResNetV1c-18,
# dilations 2/4, output stride 8, FCNHead + auxiliary FCNHead, ImageNet
# open-mmlab://resnet18_v1c), with SegNet's CamVid protocol (segext's
# CamVidDataset, batch 4 on 1 device, 40k iterations, 360x480, median-
# frequency-balanced CE) and mmseg's stock schedule (SGD lr 0.01, momentum
# 0.9, wd 5e-4, poly).  Only the data and the loss are segext's.
_base_ = [
    'mmseg::_base_/models/fcn_r50-d8.py', '../_base_/datasets/camvid.py',
    '../_base_/default_runtime_mmseg.py',
    'mmseg::_base_/schedules/schedule_40k.py'
]
custom_imports = dict(imports=['segext'], allow_failed_imports=False)
default_scope = 'mmseg'

crop_size = (360, 480)
loss = dict(
    _delete_=True,
    type='WeightedCrossEntropyLoss',
    class_weight={{_base_.camvid_class_weight}},
    loss_weight=1.0)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained='open-mmlab://resnet18_v1c',
    backbone=dict(depth=18),
    decode_head=dict(
        in_channels=512,
        channels=128,
        num_classes=11,
        loss_decode=loss),
    auxiliary_head=dict(
        in_channels=256,
        channels=64,
        num_classes=11,
        loss_decode=dict(loss, loss_weight=0.4)))
auto_scale_lr = dict(enable=False, base_batch_size=4)

# segext's runtime pieces (as every segext config): bit-identical --resume,
# atomic checkpoints loadable with weights_only=True, a stop on NaN/inf, and
# a visualiser that falls back when a checkpoint carries no dataset_meta
train_cfg = dict(type='ExactResumeIterBasedTrainLoop')
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
custom_hooks = [dict(type='RNGStateHook'), dict(type='NonFiniteCheckHook')]
visualizer = dict(type='RobustSegLocalVisualizer')
