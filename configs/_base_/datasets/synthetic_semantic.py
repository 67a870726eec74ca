# dataset settings: segext's synthetic data as an mmseg semantic dataset
# (the 'coco' layout's semantic/{train,val}2017/*.png label maps; generate
# with  python tools/dataset_converters/generate_synthetic.py data/synthetic)
# Needs custom_imports = dict(imports=['segext'], allow_failed_imports=False)
# (segext's checked loaders and CheckSegMap, see docs/reliability.md; the
# synthetic model configs set it).
dataset_type = 'BaseSegDataset'
data_root = 'data/synthetic/'
metainfo = dict(
    classes=('disk', 'box', 'triangle', 'sky', 'grass', 'sand'),
    palette=[[220, 20, 60], [106, 0, 228], [250, 170, 30], [70, 130, 180],
             [107, 142, 35], [218, 190, 120]])
crop_size = (192, 256)  # (h, w), the native size of the generated images
# Loaders that name a file they cannot read, and a check of every label map
# (values in 0..5 or 255, the image's size); CheckSegMap(on_invalid='skip')
# skips such training samples with a warning instead of stopping.
check_seg_map = dict(type='CheckSegMap', num_classes=len(metainfo['classes']))
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='CheckedLoadAnnotations'),
    check_seg_map,
    dict(
        type='RandomResize',
        scale=(256, 192),
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    # "lite": small hue shifts only, since class colours are class-typical
    dict(
        type='PhotoMetricDistortion',
        brightness_delta=16,
        contrast_range=(0.8, 1.2),
        saturation_range=(0.8, 1.2),
        hue_delta=4),
    dict(type='PackSegInputs')
]
# Test pipelines keep the stock loaders: mmdet's and mmseg's inferencers
# (DetInferencer, MMSegInferencer, inference_model) find and replace them by
# their type names; CheckSegMap still checks every label map.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 192), keep_ratio=True),
    # add loading annotation after ``Resize`` because ground truth
    # does not need to do resize data transform
    dict(type='LoadAnnotations'),
    check_seg_map,
    dict(type='PackSegInputs')
]
# num_workers=0: see synthetic_panoptic.py (tiny images, 2 shared cores).
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        data_prefix=dict(
            img_path='train2017', seg_map_path='semantic/train2017'),
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=False,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        data_prefix=dict(img_path='val2017', seg_map_path='semantic/val2017'),
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=False,
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
