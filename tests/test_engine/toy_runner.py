"""A real mmengine Runner around a two-layer model, for the runner and hook
tests: seconds to build, train and save."""
import torch
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, MODELS

TOY_HOOK = dict(type='SafeCheckpointHook', interval=2, by_epoch=False,
                max_keep_ckpts=1)


@MODELS.register_module(force=True)
class ToyModel(BaseModel):

    def __init__(self, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.SyncBatchNorm(4)

    def forward(self, inputs, data_samples=None, mode='loss'):
        out = self.bn(self.conv(inputs))
        if mode == 'loss':
            return dict(loss=out.square().mean())
        return out


@DATASETS.register_module(force=True)
class ToyDataset(torch.utils.data.Dataset):
    metainfo = dict(classes=('a', 'b'))

    def __len__(self):
        return 8

    def __getitem__(self, index):
        gen = torch.Generator().manual_seed(index)
        return dict(inputs=torch.rand(3, 6, 6, generator=gen))


def toy_cfg(work_dir, runner_type='SegextRunner', max_iters=4,
            checkpoint=TOY_HOOK, model=None, **kwargs):
    return dict(
        runner_type=runner_type,
        model=model or dict(type='ToyModel'),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=dict(type='ToyDataset'),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=dict(type='LinearLR', start_factor=0.5, by_epoch=False,
                             end=4),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=checkpoint,
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=3),
        default_scope='mmengine',
        experiment_name=f'toy-{id(work_dir)}-{max_iters}',
        **kwargs)


def toy_runner(work_dir, **kwargs):
    from mmengine.config import Config
    from mmengine.registry import RUNNERS
    return RUNNERS.build(Config(toy_cfg(work_dir, **kwargs)))
