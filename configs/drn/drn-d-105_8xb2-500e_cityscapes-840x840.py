# DRN-D-105 with the authors' stronger recipe (github.com/fyu/drn README:
# `segment.py train -s 840 --arch drn_d_105 --random-scale 2
# --random-rotate 10 --batch-size 16 --epochs 500 --lr 0.01 --momentum 0.9
# --lr-mode poly --bn-sync`, "8 GPUs for 16 crops per batch"): rotate by a
# random angle in [-10, 10], rescale by [0.5, 2], crop 840x840, flip;
# synchronized BN over 16 crops; poly lr (power 0.9, set per epoch) over 500
# epochs.  Paper/README: 75.6 mIoU on Cityscapes val.
# Differences: the authors draw integer angles and pad rotated images by
# reflection, mmseg's RandomRotate draws real angles and pads with 0; crops
# of images scaled below 840 are padded with 0 (labels 255 in both).
#   python tools/model_converters/drn2segext.py drn_d_105-12b40979.pth \
#       checkpoints/drn-d-105_imagenet.pth
_base_ = './drn-d-22_4xb8-250e_cityscapes-896x896.py'

crop_size = (840, 840)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='D',
        depth=105,
        norm_cfg=norm_cfg,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/drn-d-105_imagenet.pth')))

train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='CheckedLoadAnnotations'),
    dict(type='RandomRotate', prob=1.0, degree=10, seg_pad_val=255),
    dict(
        type='RandomResize',
        scale=(2048, 1024),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
# 8 GPUs x 2 crops = 16; one epoch = 2975 // 16 = 185 iterations
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))

# lr = 0.01 * (1 - epoch / 500) ** 0.9, once per epoch as the authors
param_scheduler = [
    dict(
        type='PolyLR',
        power=0.9,
        eta_min=0.0,
        by_epoch=True,
        begin=0,
        end=500)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=500, val_interval=10)
auto_scale_lr = dict(enable=False, base_batch_size=16)
