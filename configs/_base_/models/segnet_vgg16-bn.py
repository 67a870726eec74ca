# model settings: SegNet (Badrinarayanan et al., TPAMI 2017): the VGG-16-BN
# encoder keeps only 2-bit pooling indices; the mirrored decoder max-unpools
# with them and ends in a 3x3 classifier at the input resolution.
# Needs custom_imports = dict(imports=['segext'], allow_failed_imports=False).
norm_cfg = dict(type='BN', requires_grad=True)
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
    backbone=dict(
        type='SegNetVGG',
        depth=16,
        stage_channels=(64, 128, 256, 512, 512),
        ceil_mode=True,  # Caffe's pooling: 45 -> 23
        compact_indices=True,
        norm_cfg=norm_cfg),
    decode_head=dict(
        type='SegNetHead',
        num_convs=(2, 2, 3, 3, 3),
        stage_channels=(64, 128, 256, 512, 512),
        num_classes=19,
        dropout_ratio=0.,
        norm_cfg=norm_cfg,
        loss_decode=dict(
            type='CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=1.0,
            avg_non_ignore=True)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
