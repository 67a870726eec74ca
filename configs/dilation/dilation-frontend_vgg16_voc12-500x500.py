# The dilated VGG-16 front-end on PASCAL VOC 2012 (Yu & Koltun, ICLR 2016,
# Sec. 4; val mIoU 69.8 in the paper, trained on VOC train + SBD aug).
#
# Training settings of the paper (Sec. 4): SGD, mini-batch 14, learning rate
# 1e-3, momentum 0.9, 60K iterations, ImageNet VGG-16 initialisation; weight
# decay 5e-4 and the step policy (x0.1 every 100K, so constant here) are the
# authors' train.py solver.  (Their train.py/docs default the front-end lr to
# 1e-4; we follow the paper.)  Crops: the authors crop 500x500 from an input
# reflection-padded by 186 px and run valid (unpadded) convolutions; here the
# network pads every conv ("same") and the crop is 500x500 image pixels, all
# of them supervised.  Augmentation as theirs: random crop + mirror only.
#
# The paper trains on VOC 2012 train augmented with SBD (Hariharan et al.):
# swap the dataset base for 'mmseg::_base_/datasets/pascal_voc12_aug.py'.
#
# ImageNet weights: convert torchvision's VGG-16 first,
#   python tools/model_converters/vgg2segext.py vgg16-397923af.pth \
#       checkpoints/vgg16_segext.pth
_base_ = [
    '../_base_/models/dilation_vgg16.py',
    'mmseg::_base_/datasets/pascal_voc12.py',
    '../_base_/default_runtime_mmseg.py',
    'mmseg::_base_/schedules/schedule_80k.py'
]
custom_imports = dict(imports=['segext'], allow_failed_imports=False)
default_scope = 'mmseg'
# draws meta-less checkpoints' results too (fallback palette + warning)
visualizer = dict(type='RobustSegLocalVisualizer')

crop_size = (500, 500)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        init_cfg=dict(
            type='Pretrained', checkpoint='checkpoints/vgg16_segext.pth')),
    decode_head=dict(num_classes=21))

train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='CheckedLoadAnnotations'),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
# Test pipelines keep the stock loaders: mmdet's and mmseg's inferencers
# (DetInferencer, MMSegInferencer, inference_model) find and replace them by
# their type names; CheckSegMap still checks every label map.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    # VOC images are at most 500 px on the long side: native resolution
    dict(type='Resize', scale=(500, 500), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=14, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optimizer = dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=5e-4)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
# the authors' Caffe "step" policy: gamma 0.1 every 100K iterations
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=False, milestones=[100000], gamma=0.1)
]
train_cfg = dict(
    type='ExactResumeIterBasedTrainLoop', max_iters=60000, val_interval=5000)
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', by_epoch=False, interval=5000))
# The paper's batch is 14 images in total; mmseg's --auto-scale-lr scales the
# lr for another total batch size.
auto_scale_lr = dict(enable=False, base_batch_size=14)
custom_hooks = [
    dict(type='RNGStateHook'),  # bit-identical --resume
    dict(type='NonFiniteCheckHook'),  # stop on NaN/inf, never save it
]
