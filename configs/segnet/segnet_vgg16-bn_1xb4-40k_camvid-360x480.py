# SegNet (Badrinarayanan, Kendall and Cipolla, TPAMI 2017) on CamVid, 11
# classes at 360x480, as SegNet-Tutorial trains it (Models/segnet_train.
# prototxt, segnet_solver.prototxt):
#   * encoder initialised from ImageNet VGG-16-BN (convert it first:
#       python tools/model_converters/vgg16bn2segnet.py \
#           vgg16_bn-6c64b313.pth checkpoints/vgg16-bn_segnet-encoder.pth
#     or train from scratch: --cfg-options model.backbone.init_cfg=None);
#   * median-frequency-balanced cross entropy (weights below), void ignored,
#     averaged over the labelled pixels as Caffe's SoftmaxWithLoss does
#     (WeightedCrossEntropyLoss; mmseg 1.2.2's CrossEntropyLoss(class_weight)
#     raises IndexError on ignored pixels, see its docstring);
#   * SGD, fixed lr 0.001, momentum 0.9, weight decay 5e-4, batch 4 on 1
#     device, 40k iterations (the tutorial's max_iter; ~436 epochs of the
#     367 training images; the paper trains "until convergence").
_base_ = [
    '../_base_/models/segnet_vgg16-bn.py', '../_base_/datasets/camvid.py',
    '../_base_/default_runtime_mmseg.py',
    'mmseg::_base_/schedules/schedule_40k.py'
]
custom_imports = dict(imports=['segext'], allow_failed_imports=False)
default_scope = 'mmseg'
# draws meta-less checkpoints' results too (fallback palette + warning)
visualizer = dict(type='RobustSegLocalVisualizer')

crop_size = (360, 480)
pretrained = 'checkpoints/vgg16-bn_segnet-encoder.pth'
# median-frequency-balanced CE with SegNet-Tutorial's published weights
# (configs/_base_/datasets/camvid.py)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(
        num_classes=11,
        loss_decode=dict(
            _delete_=True,
            type='WeightedCrossEntropyLoss',
            class_weight={{_base_.camvid_class_weight}},
            loss_weight=1.0)))

optimizer = dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0005)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
# schedule_40k's loop, resuming bit-identically (RNGStateHook below)
train_cfg = dict(type='ExactResumeIterBasedTrainLoop')
# SegNet-Tutorial: lr_policy "step" with gamma 1.0, i.e. a fixed lr
param_scheduler = [
    dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=40000)
]
auto_scale_lr = dict(enable=False, base_batch_size=4)
# schedule_40k's checkpoint hook, atomic and loadable with weights_only=True
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
custom_hooks = [
    dict(type='RNGStateHook'),  # bit-identical --resume
    dict(type='NonFiniteCheckHook'),  # stop on NaN/inf, never save it
]
