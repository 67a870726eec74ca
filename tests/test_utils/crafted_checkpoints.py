"""Checkpoint files for the safe-loading tests: hostile ones (their pickle
would create a marker file) and the formats users bring."""
import builtins
from collections import OrderedDict

import numpy as np
import torch


class CreatesFile:
    """Unpickling calls ``open(path, 'w')``: the file appears only if the
    pickle's code ran (any code could run the same way)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return builtins.open, (self.path, 'w')


def crafted_checkpoint(path, marker):
    """A file that looks like an mmengine checkpoint; its meta runs code."""
    torch.save(dict(meta=dict(iter=2, epoch=0, hook=CreatesFile(marker)),
                    state_dict=OrderedDict(w=torch.zeros(1))), str(path))
    return str(path)


def stock_mmengine_checkpoint(path, scope='ckpt-fixture'):
    """What mmengine 0.10.7's Runner.save_checkpoint writes: weights, the
    message hub's HistoryBuffers and numpy values in meta."""
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import save_checkpoint
    hub = MessageHub.get_instance(scope)
    hub.update_scalar('train/loss', 0.5)
    hub.update_scalar('train/loss', 0.25)
    hub.update_info('iter', 8)
    ckpt = dict(
        meta=dict(epoch=0, iter=8, seed=np.int64(3),
                  dataset_meta=dict(classes=('a', 'b'),
                                    weights=np.array([0.5, 2.0]))),
        state_dict=OrderedDict(w=torch.ones(2)),
        message_hub=hub.state_dict())
    save_checkpoint(ckpt, str(path))
    return str(path)


def released_formats(tmp_path) -> dict:
    """One file per format users download: DRN authors' .pth (a plain
    state dict, DataParallel prefix), torchvision's VGG state dict, and an
    mmdet/mmseg model-zoo checkpoint ({'meta': ..., 'state_dict': ...})."""
    drn = OrderedDict([('module.layer0.0.weight', torch.randn(16, 3, 7, 7)),
                       ('module.layer0.1.running_mean', torch.zeros(16)),
                       ('module.layer0.1.num_batches_tracked',
                        torch.tensor(0))])
    vgg = OrderedDict([('features.0.weight', torch.randn(64, 3, 3, 3)),
                       ('features.0.bias', torch.zeros(64)),
                       ('classifier.0.weight', torch.randn(8, 4))])
    zoo = dict(
        meta=dict(mmdet_version='3.3.0', mmengine_version='0.10.7',
                  CLASSES=('person', 'car'), epoch=12, iter=87960, seed=0,
                  config="model = dict(type='MaskRCNN')",
                  hook_msgs=dict(last_ckpt='work_dirs/epoch_12.pth'),
                  time='Fri Jan 5 10:00:00 2024'),
        state_dict=OrderedDict(
            [('backbone.conv1.weight', torch.randn(4, 3, 3, 3)),
             ('roi_head.bbox_head.fc_cls.bias', torch.zeros(3))]))
    paths = {}
    for name, obj in (('drn-d-22_authors.pth', drn),
                      ('vgg16_torchvision.pth', vgg),
                      ('mask-rcnn_zoo.pth', zoo)):
        paths[name] = str(tmp_path / name)
        torch.save(obj, paths[name])
    return paths
