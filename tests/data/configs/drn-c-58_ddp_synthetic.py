# DRN-C-58's levels (Bottleneck 1,1,3,4,6,3 + two non-residual levels) at
# reduced widths, with the DRN configs' SyncBN, for a DDP step without
# ``find_unused_parameters``: the authors' code builds a level-7 downsample
# it never uses (DDP would stop at the 2nd iteration); segext's DRN omits it.
_base_ = ['./tiny-fcn-gn_ddp_synthetic.py']

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(
        _delete_=True,
        type='DRN',
        arch='C',
        depth=58,
        channels=(8, 8, 16, 16, 32, 32, 32, 32),  # paper: 16, 32, ..., 512
        out_indices=(7, ),
        norm_cfg=norm_cfg,
        norm_eval=False),
    decode_head=dict(
        _delete_=True,
        type='DRNHead',
        in_channels=32,
        in_index=-1,
        num_classes=6,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
find_unused_parameters = False  # mmengine's default, stated
train_cfg = dict(max_iters=2, val_interval=1000)
default_hooks = dict(checkpoint=dict(interval=2))
