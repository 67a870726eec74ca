# Panoptic FPN partner of the main job's UPSNet for `make compare`
# (tools/analysis_tools/compare_panoptic.py).  It inherits
# configs/upsnet/upsnet_r18-half_fpn_360it_synthetic-128x96.py, so data,
# schedule, backbone, FPN, RPN, RoI heads and detection thresholds are the
# same by construction; only the semantic and panoptic heads (and the
# fusion's own mask overlap) are mmdet's Panoptic FPN, as in
# configs/panoptic_fpn/panoptic-fpn_r18_fpn_synthetic.py at the halved width.
_base_ = ['../upsnet/upsnet_r18-half_fpn_360it_synthetic-128x96.py']

num_things_classes = 3  # disk, box, triangle
num_stuff_classes = 3  # sky, grass, sand

model = dict(
    type='PanopticFPN',
    semantic_head=dict(
        _delete_=True,
        type='PanopticFPNHead',
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        in_channels=64,
        inner_channels=32,  # 128 -> 64 of the toy, halved again
        start_level=0,
        end_level=4,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        conv_cfg=None,
        loss_seg=dict(
            type='CrossEntropyLoss', ignore_index=255, loss_weight=0.5)),
    panoptic_fusion_head=dict(
        _delete_=True,
        type='HeuristicFusionHead',
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes),
    test_cfg=dict(
        panoptic=dict(_delete_=True, mask_overlap=0.5, stuff_area_limit=64)))
