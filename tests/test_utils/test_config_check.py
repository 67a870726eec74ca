"""segext.utils.config_check: every config of the repo passes; typos and
impossible values are refused with the key and the closest valid name."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from segext.utils.config import UserInputError, load_config
from segext.utils.config_check import (RUNNER_KEYS, _edit_distance_is_one,
                                       check_cfg_options_keys, check_loops,
                                       check_batch_sizes, check_num_classes,
                                       check_optimizer, check_top_level_keys)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                         recursive=True) if '_base_' not in p) + sorted(
    glob.glob(osp.join(ROOT, 'tests', 'data', 'configs', '*.py')))


@pytest.mark.parametrize('path', CONFIGS,
                         ids=[osp.relpath(p, ROOT) for p in CONFIGS])
def test_every_config_passes(path):
    cfg = load_config(path)  # includes check_top_level_keys
    scope = cfg.default_scope
    check_loops(cfg, scope)
    check_optimizer(cfg, scope)
    check_batch_sizes(cfg)
    check_num_classes(cfg, scope)


@pytest.mark.parametrize('typo, known', [
    ('trian_cfg', 'train_cfg'),        # swap
    ('train_cgf', 'train_cfg'),
    ('default_hook', 'default_hooks'),  # deletion
    ('val_evaluater', 'val_evaluator'),  # substitution
    ('optim_wraper', 'optim_wrapper'),  # deletion
    ('modeel', 'model'),  # insertion
])
def test_near_miss_of_a_runner_key_is_refused(typo, known):
    assert _edit_distance_is_one(typo, known)
    with pytest.raises(UserInputError,
                       match=f"unknown top-level key '{typo}' \\(did you "
                       f"mean '{known}'\\?\\)"):
        check_top_level_keys(Config({typo: 1}), 'x.py')


@pytest.mark.parametrize('helper', [
    'data_root', 'num_things_classes', 'image_size', 'metainfo', 'models',
    'conv_cfg', 'val_evaluator_full', 'train_dataset', 'tta_model',
    'custom_keys', 'max_iters', 'check_seg_map'
])
def test_helper_variables_pass(helper):
    """Names stock mmdet/mmseg configs and segext's use at top level."""
    check_top_level_keys(Config({helper: 1}), 'x.py')


def test_cfg_options_may_not_create_top_level_entries():
    cfg = Config(dict(train_cfg=dict(max_iters=4), data_root='d'))
    check_cfg_options_keys(cfg, {'train_cfg.max_iters': 2}, 'x.py')
    check_cfg_options_keys(cfg, {'data_root': 'e'}, 'x.py')
    # a Runner key the config leaves at its default may be set
    check_cfg_options_keys(cfg, {'randomness.seed': 0}, 'x.py')
    assert 'randomness' in RUNNER_KEYS
    with pytest.raises(UserInputError, match="did you mean 'train_cfg'"):
        check_cfg_options_keys(cfg, {'trian_cfg.max_iters': 2}, 'x.py')
    with pytest.raises(UserInputError, match="no top-level key 'foo'"):
        check_cfg_options_keys(cfg, {'foo': 1}, 'x.py')


def test_loop_type_and_by_epoch_together_are_refused():
    cfg = Config(dict(train_cfg=dict(type='EpochBasedTrainLoop',
                                     by_epoch=True, max_epochs=2)))
    with pytest.raises(UserInputError, match='only one of them'):
        check_loops(cfg, 'mmdet')


def test_optimizer_without_lr_or_with_kwargs_passes():
    check_optimizer(Config(dict(optim_wrapper=dict(
        optimizer=dict(type='AdamW', weight_decay=0.05)))), 'mmseg')
    with pytest.raises(UserInputError, match=r'lr=0: expected a number > 0'):
        check_optimizer(Config(dict(optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0)))), 'mmseg')
