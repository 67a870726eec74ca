# Front-end + LARGE context module on PASCAL VOC 2012 (Yu & Koltun, ICLR 2016,
# Table 1 widths 2C..32C with C = 21 classes; val mIoU 72.1 in the paper).
#
# The authors' recipe (their docs/training.md): train the front-end first
# (dilation-frontend_vgg16_voc12-500x500.py), then train the context module
# on the front-end's class scores with lr 1e-3, momentum 0.9, and optionally
# fine-tune both jointly with lr 1e-5.  This config is the context stage: it
# loads the trained front-end (load_from), freezes it (backbone frozen_stages=5
# and the classifier's lr_mult 0; no dropout, the scores are test-time
# scores) and trains only the identity-initialised module (Sec. 3), which
# therefore starts out reproducing the front-end.  The authors trained this
# stage on cached score maps, 60 per batch; here the front-end runs on the
# fly on 14 images of 500x500 per batch.  The iteration count is our choice
# (not given by the paper or the authors' docs).
#
# Joint fine-tuning (lr 1e-5, nothing frozen): see docs/context_module.md.
_base_ = './dilation-frontend_vgg16_voc12-500x500.py'

load_from = 'work_dirs/dilation-frontend_vgg16_voc12-500x500/iter_60000.pth'
model = dict(
    backbone=dict(frozen_stages=5, init_cfg=None),
    decode_head=dict(
        type='ContextHead',
        dropout_ratio=0.0,
        context_cfg=dict(arch='large', dilations='voc')))

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={'decode_head.conv_seg': dict(lr_mult=0., decay_mult=0.)}))
train_cfg = dict(max_iters=40000, val_interval=5000)
