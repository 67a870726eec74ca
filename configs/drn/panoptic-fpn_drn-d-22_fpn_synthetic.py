# Panoptic FPN (mmdet's, unchanged) with DRN-D-22 as the backbone, on
# segext's synthetic panoptic data -- side by side with
# ../panoptic_fpn/panoptic-fpn_r18_fpn_synthetic.py (same heads, data and
# schedule; both from scratch).
#
# DRN keeps output stride 8: its levels have strides 1, 2, 4, 8, 8, 8, 8, 8,
# so only ONE level per stride 4 and 8 reaches FPN: level 3 (out index 2,
# 64 ch, stride 4) and level 8 (out index 7, the last, degridded level, 512
# ch, stride 8).  FPN's strides 16, 32 and 64 are three extra stride-2 3x3
# convs on FPN's stride-8 output (add_extra_convs='on_output'); RPN's anchor
# strides (4..64) and the RoI/semantic heads' strides (4..32) stay mmdet's.
# Cost: the extra convs add 3 x 147,584 = 442,752 parameters at the base's
# 128 FPN channels (3 x 590,080 at mmdet's 256), cheap as they run at
# strides 16-64; the real cost is the backbone: DRN runs levels 5-8 -- most
# of its 15.9M parameters -- at stride 8 where ResNet-18 runs its last stages
# at 16 and 32, ~7x ResNet-18's conv MACs (docs/drn.md).
_base_ = '../panoptic_fpn/panoptic-fpn_r18_fpn_synthetic.py'
custom_imports = dict(imports=['segext'], allow_failed_imports=False)
default_scope = 'mmdet'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DRN',
        arch='D',
        depth=22,
        out_indices=(2, 7),  # strides 4 and 8
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False),  # from scratch: the authors' Kaiming init
    neck=dict(
        type='FPN',
        in_channels=[64, 512],
        num_outs=5,
        add_extra_convs='on_output'))
