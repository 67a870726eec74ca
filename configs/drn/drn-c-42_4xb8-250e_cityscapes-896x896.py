# DRN-C-42, the authors' recipe (see the DRN-D-22 config).
# Paper (Table 4): 70.9 mIoU on Cityscapes val.
#   python tools/model_converters/drn2segext.py drn_c_42-9d336e8c.pth \
#       checkpoints/drn-c-42_imagenet.pth
_base_ = './drn-d-22_4xb8-250e_cityscapes-896x896.py'
model = dict(
    backbone=dict(
        arch='C',
        depth=42,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/drn-c-42_imagenet.pth')))
