# DRN-D-22 + the LARGE dilated context module (Yu & Koltun, ICLR 2016,
# Table 1) on CamVid, stage 2 of the paper's two-stage recipe:
#   1. train drn-d-22_1xb4-40k_camvid-360x480.py (the front-end);
#   2. this config: load its last checkpoint, freeze it (backbone and
#      classifier) and train only the identity-initialised module, with the
#      authors' context-stage lr 1e-3 (fyu/dilation docs/training.md),
#      constant, 40k iterations of batch 4 (our choice).
# ContextHead = classifier (C = 11) -> large module (dilations 1, 1, 2, 4,
# 8, 16, 1: receptive field 67x67 score pixels = 536 px at stride 8, more
# than the 360x480 image) -> DRNHead's fixed bilinear x8 upsampling.  The
# classifier keys are DRNHead's, so stage 1 loads unchanged.
#
#   python tools/train.py configs/drn/drn-d-22_1xb4-40k_camvid-360x480.py
#   python tools/train.py \
#       configs/drn/drn-d-22-context_1xb4-40k_camvid-360x480.py
_base_ = './drn-d-22_1xb4-40k_camvid-360x480.py'

load_from = 'work_dirs/drn-d-22_1xb4-40k_camvid-360x480/iter_40000.pth'
model = dict(
    backbone=dict(frozen_stages=8, init_cfg=None),  # stem and levels 1-8
    decode_head=dict(
        type='ContextHead',
        context_cfg=dict(arch='large', dilations='voc')))
optim_wrapper = dict(
    optimizer=dict(lr=1e-3),
    paramwise_cfg=dict(
        custom_keys={'decode_head.conv_seg': dict(lr_mult=0., decay_mult=0.)}))
param_scheduler = [
    dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=40000)
]
