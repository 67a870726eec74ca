# dataset settings: segext's synthetic COCO-panoptic-layout data
# (generate it with
#   python tools/dataset_converters/generate_synthetic.py data/synthetic)
# Needs custom_imports = dict(imports=['segext'], allow_failed_imports=False)
# (the synthetic model configs set it): CheckedCocoPanopticDataset is mmdet's
# CocoPanopticDataset with json errors naming the file, the checked loaders
# name a file they cannot read, CheckSegMap checks every panoptic PNG against
# its image (see docs/reliability.md); the evaluator is segext's
# NonMutatingCocoPanopticMetric.
dataset_type = 'CheckedCocoPanopticDataset'
data_root = 'data/synthetic/'
# things first, then stuff (mmdet's panoptic label order); category ids 1..6
metainfo = dict(
    classes=('disk', 'box', 'triangle', 'sky', 'grass', 'sand'),
    thing_classes=('disk', 'box', 'triangle'),
    stuff_classes=('sky', 'grass', 'sand'),
    palette=[(220, 20, 60), (106, 0, 228), (250, 170, 30), (70, 130, 180),
             (107, 142, 35), (218, 190, 120)])
image_size = (256, 192)  # (w, h), the native size of the generated images
backend_args = None
check_seg_map = dict(type='CheckSegMap', num_classes=len(metainfo['classes']))

train_pipeline = [
    dict(type='CheckedLoadImageFromFile', backend_args=backend_args),
    dict(type='CheckedLoadPanopticAnnotations', backend_args=backend_args),
    check_seg_map,
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
# Test pipelines keep the stock loaders: mmdet's and mmseg's inferencers
# (DetInferencer, MMSegInferencer, inference_model) find and replace them by
# their type names; CheckSegMap still checks every label map.
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadPanopticAnnotations', backend_args=backend_args),
    check_seg_map,
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]

# num_workers=0: loading + transforming one 256x192 sample takes ~30 ms on
# the shared 2-core box (measured under load), a few % of a CPU training
# step; worker processes would only take cores from the model's own torch
# threads and add start-up time (persistent_workers requires workers > 0).
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_train2017.json',
        data_prefix=dict(
            img='train2017/', seg='annotations/panoptic_train2017/'),
        # keep the images without things: models must train on them too
        filter_cfg=dict(filter_empty_gt=False, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_val2017.json',
        data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

# The instances json (annotations/instances_val2017.json) also allows
# dict(type='CocoMetric', metric=['bbox', 'segm'], ann_file=...) for models
# that output `pred_instances`; panoptic-only models do not, so it is not
# part of this base.
# NonMutatingCocoPanopticMetric = mmdet's CocoPanopticMetric without its
# in-place VOID -> 0 edit of CPU predictions (which would otherwise show VOID
# as class 0 in --show-dir overlays and --out dumps).
val_evaluator = [
    dict(
        type='NonMutatingCocoPanopticMetric',
        ann_file=data_root + 'annotations/panoptic_val2017.json',
        seg_prefix=data_root + 'annotations/panoptic_val2017/',
        backend_args=backend_args)
]
test_evaluator = val_evaluator
