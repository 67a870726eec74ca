# model settings: the DRN authors' segmentation model (Yu, Koltun,
# Funkhouser, CVPR 2017, Sec. 5.2) -- a DRN backbone (output stride 8, the
# last level only) -> 1x1 classifier -> fixed bilinear x8 transposed conv
# (DRNHead: kernel 16, stride 8, padding 4, not trained) -> CE, ignore 255.
custom_imports = dict(imports=['segext'], allow_failed_imports=False)
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='DRN',
        arch='D',
        depth=22,
        out_indices=(7, ),  # level 8: 512 channels, stride 8
        norm_cfg=norm_cfg,
        norm_eval=False),
    decode_head=dict(
        type='DRNHead',
        in_channels=512,
        in_index=-1,
        num_classes=19,
        align_corners=False,
        # mean over the labelled pixels, as the authors' NLLLoss(ignore 255)
        loss_decode=dict(
            type='CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=1.0,
            avg_non_ignore=True)),
    # model training and testing settings
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
