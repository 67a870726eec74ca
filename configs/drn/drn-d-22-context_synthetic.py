# Toy: DRN-D-22's levels (reduced widths, see drn-d-22_synthetic.py) + the
# dilated context module of Yu & Koltun (ICLR 2016) on segext's synthetic
# semantic data (6 classes, 256x192), trained from scratch on CPU.
#
# The head is the paper's arrangement (ContextHead): the 1x1 classifier's
# class scores (C = 6) -> the BASIC context module (Table 1: 8 layers,
# dilations 1, 1, 2, 4, 8, 16, 1, receptive field 67x67 at stride 8, i.e.
# more than the whole 32x24 score map) -> the same fixed bilinear x8
# upsampling as DRNHead.  The module starts as the identity (Sec. 3), so the
# model starts as drn-d-22_synthetic.py's; same data, schedule and budget, so
# the two mIoUs compare directly.  For the large module:
#   --cfg-options model.decode_head.context_cfg.arch=large
_base_ = './drn-d-22_synthetic.py'

model = dict(
    decode_head=dict(
        type='ContextHead',
        context_cfg=dict(arch='basic', dilations='voc')))
