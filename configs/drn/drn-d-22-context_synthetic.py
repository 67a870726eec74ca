# Toy: DRN-D-22's levels (reduced widths, see drn-d-22_synthetic.py) + the
# dilated context module of Yu & Koltun (ICLR 2016) on segext's synthetic
# semantic data (6 classes, 256x192), on CPU.
#
# The head is the paper's arrangement (ContextHead): the 1x1 classifier's
# class scores (C = 6) -> the LARGE context module (Table 1: widths 12..192,
# dilations 1, 1, 2, 4, 8, 16, 1, receptive field 67x67 at stride 8, i.e.
# more than the whole 32x24 score map) -> the same fixed bilinear x8
# upsampling as DRNHead.
#
# The paper's recipe, two stages: the front-end is drn-d-22_synthetic.py's
# trained model (run it first), loaded with load_from and frozen (backbone
# and classifier); only the identity-initialised module trains, so training
# starts from the front-end's predictions.  Same data, schedule and batch as
# drn-d-22_synthetic.py.  Joint training of everything from scratch works
# badly at this budget: the truncation (ReLU) on the raw class scores of an
# untrained classifier cuts the gradient of the rare thing classes, which end
# at IoU 0 -- see docs/context_module.md.
#
#   python tools/train.py configs/drn/drn-d-22_synthetic.py
#   python tools/train.py configs/drn/drn-d-22-context_synthetic.py
_base_ = './drn-d-22_synthetic.py'

load_from = 'work_dirs/drn-d-22_synthetic/iter_300.pth'
model = dict(
    backbone=dict(frozen_stages=8),  # stem and levels 1-8
    decode_head=dict(
        type='ContextHead',
        context_cfg=dict(arch='large', dilations='voc')))
# the authors' context-stage lr (fyu/dilation docs/training.md), with the
# toy's warm-up + poly schedule
optim_wrapper = dict(
    optimizer=dict(lr=1e-3),
    paramwise_cfg=dict(
        custom_keys={'decode_head.conv_seg': dict(lr_mult=0., decay_mult=0.)}))
