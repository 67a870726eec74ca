# model settings: the dilated VGG-16 front-end of Yu & Koltun (ICLR 2016,
# Sec. 4) -- VGG-16 without pool4/pool5, conv5 dilated by 2, fc6 a 7×7 conv
# dilated by 4, output stride 8 -- with its 1×1 classifier ('final') and the
# authors' fixed bilinear ×8 upsampling (DRNHead: kernel 16, stride 8, pad 4).
# The context-module configs swap the head for ContextHead.
custom_imports = dict(imports=['segext'], allow_failed_imports=False)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],  # torchvision VGG-16 (RGB) statistics
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='DilatedVGG',
        depth=16,
        out_indices=(5, ),  # fc7, 4096 channels, stride 8
        dropout_ratio=0.5),  # drop6
    decode_head=dict(
        type='DRNHead',
        in_channels=4096,
        in_index=-1,
        dropout_ratio=0.5,  # drop7
        num_classes=21,
        # the authors' 'final' layer: N(0, 1e-3²), zero bias
        init_cfg=dict(
            type='Normal', std=1e-3, bias=0, override=dict(name='conv_seg')),
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
