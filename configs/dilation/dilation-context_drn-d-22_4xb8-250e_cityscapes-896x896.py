# DRN-D-22 + the dilated context module on Cityscapes: the context module of
# Yu & Koltun (ICLR 2016) between the classifier and the x8 upsampling of the
# DRN authors' segmentation model (drn-d-22_4xb8-250e_cityscapes-896x896.py,
# 68.0 mIoU in the DRN paper), trained on top of that trained model.
#
# Head form (ContextHead), not a neck on the 512-channel features:
# * it is the paper's placement -- the module aggregates the class scores
#   (C = 19), as in the authors' own Cityscapes model (dilation10_cityscapes:
#   19-channel "basic" layers, dilations 1, 1, 2, 4, 8, 16, 32, 64, 1, then
#   1x1, then the fixed bilinear deconvolution, kernel 16 / stride 8 / pad 4);
# * it costs 30K parameters instead of 21.5M for the same module at C = 512;
# * identity-initialised, it starts as DRN-D-22's own head, and its
#   classifier is DRNHead's (same state-dict keys), so the trained DRN-D-22
#   loads into it unchanged.
# Receptive field of the 10-layer module: 259x259 score pixels = 2072 px at
# stride 8, the whole 896x896 crop (and the 1024x2048 test image).
#
# Two stages, the paper's recipe: train drn-d-22_4xb8-250e_cityscapes-
# 896x896.py first; this config loads its last checkpoint, freezes it
# (backbone and classifier) and trains the module alone with the authors'
# context-stage lr 1e-3 (fyu/dilation docs/training.md), constant, for 50
# epochs (our choice; the authors do not state it).  Training the module
# jointly from an untrained classifier lets the truncation cut the gradient
# of rare classes (docs/context_module.md).
_base_ = '../drn/drn-d-22_4xb8-250e_cityscapes-896x896.py'

load_from = 'work_dirs/drn-d-22_4xb8-250e_cityscapes-896x896/epoch_250.pth'
model = dict(
    backbone=dict(frozen_stages=8, init_cfg=None),  # stem, levels 1-8
    decode_head=dict(
        type='ContextHead',
        context_cfg=dict(arch='basic', dilations='cityscapes')))
optim_wrapper = dict(
    optimizer=dict(lr=1e-3),
    paramwise_cfg=dict(
        custom_keys={'decode_head.conv_seg': dict(lr_mult=0., decay_mult=0.)}))
param_scheduler = []  # constant lr
train_cfg = dict(max_epochs=50)
