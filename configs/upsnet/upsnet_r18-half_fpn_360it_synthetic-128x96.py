# The main job's UPSNet (`make demo`): the synthetic toy of
# upsnet_r18_fpn_synthetic.py shrunk to answer in minutes on a 2-core CPU,
# and the model side of `make compare` (tools/analysis_tools/
# compare_panoptic.py), whose Panoptic FPN partner
# configs/panoptic_fpn/panoptic-fpn_r18-half_fpn_360it_synthetic-128x96.py
# inherits this file and swaps only the semantic and panoptic heads.
#
# What is shrunk (docs/upsnet.md, "Results", has the numbers):
# * images 128x96 (the generator's `size=(96, 128)`, written by
#   tools/main_job.py to data/synthetic_128x96): a quarter of the pixels;
# * ResNet-18 at half width (base_channels 32: 32-64-128-256), a 64-ch FPN,
#   RPN and RoI heads -- the mask head's four 3x3 convs on every positive
#   RoI dominate a 128x96 step at full width;
# * 360 iterations at batch 2, lr x0.1 for the last 60 (a step, as the
#   paper's schedules), so the last weights do not depend on where the
#   constant-LR noise happened to stop.
_base_ = ['./upsnet_r18_fpn_synthetic.py']

data_root = 'data/synthetic_128x96/'
image_size = (128, 96)  # (w, h), the native size of the generated images
# the base's pipelines and evaluator with this size and root (whatever their
# other steps and metric type are)
train_pipeline = [
    dict(t, scale=image_size) if t.type == 'Resize' else t
    for t in _base_.train_pipeline
]
test_pipeline = [
    dict(t, scale=image_size) if t.type == 'Resize' else t
    for t in _base_.test_pipeline
]
train_dataloader = dict(
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(
        metric,
        ann_file=data_root + 'annotations/panoptic_val2017.json',
        seg_prefix=data_root + 'annotations/panoptic_val2017/')
    for metric in _base_.val_evaluator
]
test_evaluator = val_evaluator

model = dict(
    backbone=dict(base_channels=32),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(in_channels=64, conv_out_channels=64)),
    # the paper's 3-conv head at a quarter width (64-32-32 on the 64-ch FPN)
    semantic_head=dict(
        in_channels=64,
        feat_channels=(64, 32, 32),
        roi_extractor=dict(out_channels=128)),
    # 256 px at 256x192 scaled with the image area: a quarter
    test_cfg=dict(panoptic=dict(stuff_area_limit=64)))

max_iters = 360
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[300], gamma=0.1),
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
log_processor = dict(window_size=10)
