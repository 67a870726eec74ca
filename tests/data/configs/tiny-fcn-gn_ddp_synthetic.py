# Tiny, batch-split-invariant mmseg model for the distributed tests
# (tests/test_tools/test_dist_train.py, test_slurm.py): the tool-test model
# (tiny-fcn_synthetic.py) narrowed, with GroupNorm (per-sample statistics), no
# dropout, no random transforms, a seeded sampler and a loss averaged over all
# pixels -- so 2 processes x batch 1 take exactly the steps of 1 process x
# batch 2.
_base_ = ['./tiny-fcn_synthetic.py']

norm_cfg = dict(type='GN', num_groups=4, requires_grad=True)
model = dict(
    backbone=dict(
        stem_channels=8, base_channels=8,
        norm_cfg=dict(_delete_=True, **norm_cfg)),
    decode_head=dict(
        in_channels=64, channels=16,
        dropout_ratio=0.0,  # dropout draws per-process random masks
        norm_cfg=dict(_delete_=True, **norm_cfg)))

pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='CheckedLoadAnnotations'),
    dict(type='CheckSegMap', num_classes=6),
    dict(type='PackSegInputs'),
]
# per-process batch; the tests set 2 for one process, 1 for two processes
train_dataloader = dict(
    batch_size=2,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(pipeline=pipeline))
val_dataloader = dict(dataset=dict(pipeline=pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=6, val_interval=6)
optim_wrapper = dict(optimizer=dict(lr=0.05))
