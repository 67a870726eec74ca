# DRN-C-26, the authors' recipe (see the DRN-D-22 config).
# Paper (Table 4): 68.0 mIoU on Cityscapes val.
#   python tools/model_converters/drn2segext.py drn_c_26-ddedf421.pth \
#       checkpoints/drn-c-26_imagenet.pth
_base_ = './drn-d-22_4xb8-250e_cityscapes-896x896.py'
model = dict(
    backbone=dict(
        arch='C',
        depth=26,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/drn-c-26_imagenet.pth')))
