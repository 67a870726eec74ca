# DRN-D-22 + the dilated context module on Cityscapes: the DRN authors'
# segmentation recipe (drn-d-22_4xb8-250e_cityscapes-896x896.py, 68.0 mIoU
# in the DRN paper) with the context module of Yu & Koltun (ICLR 2016)
# between the classifier and the x8 upsampling.
#
# Head form (ContextHead), not a neck on the 512-channel features:
# * it is the paper's placement -- the module aggregates the class scores
#   (C = 19), as in the authors' own Cityscapes model (dilation10_cityscapes:
#   19-channel "basic" layers, dilations 1, 1, 2, 4, 8, 16, 32, 64, 1, then
#   1x1, then the fixed bilinear deconvolution, kernel 16 / stride 8 / pad 4);
# * it costs 30K parameters instead of 21.5M for the same module at C = 512;
# * identity-initialised (and with every initial class score positive,
#   ContextHead's score_bias), it starts as DRN-D-22's own head, and its
#   classifier is DRNHead's (same state-dict keys): load_from a trained
#   DRN-D-22 Cityscapes checkpoint to train the module on top of it, as the
#   paper's two stages.
# Receptive field of the 10-layer module: 259x259 score pixels = 2072 px at
# stride 8, the whole 896x896 crop (and the 1024x2048 test image).
_base_ = '../drn/drn-d-22_4xb8-250e_cityscapes-896x896.py'

model = dict(
    decode_head=dict(
        type='ContextHead',
        context_cfg=dict(arch='basic', dilations='cityscapes')))
