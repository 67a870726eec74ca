# dataset settings: Cityscapes panoptic (8 things + 11 stuff classes) in
# mmdet, from cityscapesscripts' createPanopticImgs output; see
# docs/cityscapes_panoptic.md for preparing data/cityscapes.
#   data/cityscapes/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png
#   data/cityscapes/gtFine/cityscapes_panoptic_{train,val}.json
#   data/cityscapes/gtFine/cityscapes_panoptic_{train,val}/*_panoptic.png
# Labels: things first (person .. bicycle = 0..7), then stuff (road .. sky =
# 8..18), 255 void -- see CityscapesPanopticDataset.METAINFO.
# Needs custom_imports = dict(imports=['segext'], allow_failed_imports=False)
# in the config that inherits it (not set here: mmengine refuses a key set by
# two bases, and segext's model bases set it).
dataset_type = 'CityscapesPanopticDataset'
data_root = 'data/cityscapes/'
backend_args = None
# checked loaders + CheckSegMap: see docs/reliability.md (19 classes)
check_seg_map = dict(type='CheckSegMap', num_classes=19)

# UPSNet's Cityscapes recipe: short side 800..1024, long side <= 2048, flip
# (RandomResize over the range, as mmdet's cityscapes_instance.py)
train_pipeline = [
    dict(type='CheckedLoadImageFromFile', backend_args=backend_args),
    dict(type='CheckedLoadPanopticAnnotations', backend_args=backend_args),
    check_seg_map,
    dict(
        type='RandomResize',
        scale=[(2048, 800), (2048, 1024)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
# test at the native 1024x2048
# Test pipelines keep the stock loaders: mmdet's and mmseg's inferencers
# (DetInferencer, MMSegInferencer, inference_model) find and replace them by
# their type names; CheckSegMap still checks every label map.
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    dict(type='LoadPanopticAnnotations', backend_args=backend_args),
    check_seg_map,
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]

# 2 images per GPU; 8 GPUs x 2 = the recipe's total batch of 16
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='gtFine/cityscapes_panoptic_train.json',
        data_prefix=dict(
            img='leftImg8bit/train/', seg='gtFine/cityscapes_panoptic_train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='gtFine/cityscapes_panoptic_val.json',
        data_prefix=dict(
            img='leftImg8bit/val/', seg='gtFine/cityscapes_panoptic_val/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

# PQ against the label-id json (as cityscapesscripts' evaluation); the
# stock CocoPanopticMetric cannot read Cityscapes' json conventions.  (It is
# a NonMutatingCocoPanopticMetric: CPU predictions keep their VOID.)
val_evaluator = dict(
    type='CityscapesPanopticMetric',
    ann_file=data_root + 'gtFine/cityscapes_panoptic_val.json',
    seg_prefix=data_root + 'gtFine/cityscapes_panoptic_val/',
    backend_args=backend_args)
test_evaluator = val_evaluator
