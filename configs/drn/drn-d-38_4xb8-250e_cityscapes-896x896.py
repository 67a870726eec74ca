# DRN-D-38, the authors' recipe (see the DRN-D-22 config).
# Paper (Table 4): 71.4 mIoU on Cityscapes val.
#   python tools/model_converters/drn2segext.py drn_d_38-eebb45f0.pth \
#       checkpoints/drn-d-38_imagenet.pth
_base_ = './drn-d-22_4xb8-250e_cityscapes-896x896.py'
model = dict(
    backbone=dict(
        arch='D',
        depth=38,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/drn-d-38_imagenet.pth')))
