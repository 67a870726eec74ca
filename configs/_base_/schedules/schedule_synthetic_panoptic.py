# The toy training budget for panoptic models on the synthetic dataset (CPU,
# about 10 min for the main job on 2 cores).  Panoptic FPN and UPSNet toy
# configs both inherit it, so their PQ is compared at equal budget: 300
# iterations at batch 2 (about 9 epochs of the 64 training images), linear
# warm-up then a constant LR.  Half of it is not enough: at 150 iterations
# the thing classes are half learnt and UPSNet's PQ swings by 16 points with
# the float summation order (see docs/upsnet.md).
max_iters = 300
train_cfg = dict(
    type='ExactResumeIterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=2)
# seeded, so the main job's PQ is reproducible run to run
randomness = dict(seed=0)
