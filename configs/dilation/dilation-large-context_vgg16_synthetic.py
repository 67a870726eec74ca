# Toy: dilated VGG-16 front-end + LARGE context module (Yu & Koltun, ICLR
# 2016, Table 1 widths 12..192 for C = 6) on segext's synthetic semantic
# data, CPU-sized.  The paper's two stages, as the VOC configs: the trained
# toy front-end (dilation-frontend_vgg16_synthetic.py -- run it first) is
# loaded and frozen, and only the identity-initialised module trains.
#
#   python tools/train.py \
#       configs/dilation/dilation-frontend_vgg16_synthetic.py
#   python tools/train.py \
#       configs/dilation/dilation-large-context_vgg16_synthetic.py
_base_ = './dilation-frontend_vgg16_synthetic.py'

load_from = 'work_dirs/dilation-frontend_vgg16_synthetic/iter_300.pth'
model = dict(
    backbone=dict(frozen_stages=5),  # conv1-conv5, fc6, fc7
    decode_head=dict(
        type='ContextHead',
        dropout_ratio=0.0,
        context_cfg=dict(arch='large', dilations='voc')))
# the authors' context-stage lr (fyu/dilation docs/training.md), with the
# toy's warm-up + poly schedule
optim_wrapper = dict(
    optimizer=dict(lr=1e-3),
    paramwise_cfg=dict(
        custom_keys={'decode_head.conv_seg': dict(lr_mult=0., decay_mult=0.)}))
