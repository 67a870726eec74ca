"""Every config under configs/ loads and its model builds in its host
library's registry (``Config.fromfile`` + ``MODELS.build``)."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p.split(osp.sep))


def host_models(scope):
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS


def test_there_are_configs():
    assert len(CONFIGS) >= 2, CONFIGS


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    scope = cfg.get('default_scope')
    assert scope in ('mmdet', 'mmseg'), f'{config}: default_scope={scope!r}'
    imports = cfg.get('custom_imports', {}).get('imports', [])
    assert 'segext' in imports, f'{config} must custom_import segext'
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                'optim_wrapper', 'train_cfg'):
        assert key in cfg, f'{config}: missing {key}'
    # never download weights while building: init_cfg is not applied here
    with DefaultScope.overwrite_default_scope(scope):
        model = host_models(scope).build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
