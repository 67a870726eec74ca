"""Bit-identical ``--resume`` (issue 10, item 1).

A run resumed from its iteration-2 checkpoint must end with exactly the
weights of the uninterrupted run, for an mmdet model (UPSNet toy: mmdet's
RoI sampler draws from ``torch.randperm``), an mmseg model (the dilated
VGG front-end toy: dropout 0.5 draws torch masks, the pipeline flips and
crops with ``numpy.random``) and a 2-process DDP run (tools/dist_train.sh,
dropout: every rank has its own stream).  Before RNGStateHook +
ExactResumeIterBasedTrainLoop, 148 of UPSNet's 176 tensors differed.
"""
import os.path as osp
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tests', 'test_tools'))
import dist_helpers as H  # noqa: E402

UPSNET = osp.join(ROOT, 'configs', 'upsnet', 'upsnet_r18_fpn_synthetic.py')
DILATION = osp.join(ROOT, 'configs', 'dilation',
                    'dilation-frontend_vgg16_synthetic.py')
TIMEOUT = 600


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return H.generate_data(H.session_dir(tmp_path_factory, 'resume_data'))


def options(data_root, iters=4, panoptic=False, validate=False):
    """A checkpoint every 2 iterations; validation (at the end) only when
    asked: it costs time and RNGStateHook keeps it out of the stream."""
    extra = ['default_hooks.checkpoint.interval=2',
             'default_hooks.checkpoint.max_keep_ckpts=-1']
    if not validate:
        extra.append('train_cfg.val_begin=1000')
    if panoptic:
        ann = f'{data_root}/annotations/panoptic_val2017.json'
        seg = f'{data_root}/annotations/panoptic_val2017/'
        extra += [f'val_evaluator.0.ann_file={ann}',
                  f'val_evaluator.0.seg_prefix={seg}']
    return H.data_options(data_root, max_iters=iters, val_interval=1000,
                          extra=extra)


def assert_same_weights(ckpt_a, ckpt_b):
    a = H.state_dict(ckpt_a)['state_dict']
    b = H.state_dict(ckpt_b)['state_dict']
    assert set(a) == set(b)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    worst = max(((a[k].double() - b[k].double()).abs().max().item()
                 for k in differ if a[k].is_floating_point()), default=0)
    assert not differ, (f'{len(differ)} of {len(a)} tensors differ after '
                        f'resume (max |diff| {worst:.3g}): {differ[:5]}')


def uninterrupted_and_resumed(config, tmp_path, opts, launch):
    """Train 4 iterations; train again from the first run's iteration-2
    checkpoint (what a run killed after iteration 2 left) with --resume."""
    full, res = tmp_path / 'full', tmp_path / 'resumed'
    launch(config, full, opts, [], tmp_path / 'full.log')
    assert H.checkpoint_iter(full / 'iter_2.pth') == 2
    proc = launch(config, res, opts, ['--resume', str(full / 'iter_2.pth')],
                  tmp_path / 'resumed.log')
    log = proc.text()
    assert 'resumed epoch: 0, iter: 2' in log, log[-3000:]
    assert 'RNGStateHook:' not in log, log[-3000:]  # no "not exact" warning
    return full / 'iter_4.pth', res / 'iter_4.pth'


def single_process(config, work_dir, opts, extra, log):
    return H.run(H.train_cmd(config, work_dir, opts, *extra), log, TIMEOUT)


def two_processes(config, work_dir, opts, extra, log):
    cmd = ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), str(config),
           '2', '--work-dir', str(work_dir), *extra, *opts]
    return H.run(cmd, log, TIMEOUT, env=H.tool_env(PORT=H.free_port()))


def test_mmdet_upsnet_resume_is_bit_identical(tmp_path, data_root):
    a, b = uninterrupted_and_resumed(
        UPSNET, tmp_path, options(data_root, panoptic=True), single_process)
    assert_same_weights(a, b)


def test_mmseg_dilation_resume_is_bit_identical(tmp_path, data_root):
    a, b = uninterrupted_and_resumed(DILATION, tmp_path, options(data_root),
                                     single_process)
    assert_same_weights(a, b)


def test_ddp_two_process_resume_is_bit_identical(tmp_path, data_root):
    """2 processes x batch 1 with dropout: each rank resumes its own RNG
    stream (rank 0 writes the checkpoint; every rank's state is in it)."""
    config = tmp_path / 'tiny-fcn-gn-dropout_ddp.py'
    config.write_text(
        f"_base_ = ['{H.GN_CONFIG}']\n"
        "model = dict(decode_head=dict(dropout_ratio=0.3))\n"
        "train_dataloader = dict(batch_size=1)\n"
        "train_cfg = dict(type='ExactResumeIterBasedTrainLoop')\n"
        "custom_hooks = [dict(type='RNGStateHook')]\n")
    a, b = uninterrupted_and_resumed(
        config, tmp_path, options(data_root, validate=True), two_processes)
    saved = H.state_dict(a)['rng_state']
    assert saved['world_size'] == 2 and len(saved['ranks']) == 2
    assert_same_weights(a, b)


def _segext_configs():
    import glob
    return sorted(p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                                       recursive=True)
                  if '_base_' not in p.split(osp.sep))


@pytest.mark.parametrize('config', _segext_configs(),
                         ids=lambda p: osp.relpath(p, ROOT))
def test_every_config_resumes_exactly_and_checks_finiteness(config):
    """segext's configs select the hooks, and an iteration-based schedule
    the loop that skips trained batches without moving the generators; the
    types resolve in the config's own scope (mmdet or mmseg)."""
    from mmengine.config import Config
    from mmengine.registry import HOOKS, LOOPS, DefaultScope
    cfg = Config.fromfile(config)
    types = [h['type'] for h in cfg.get('custom_hooks', [])]
    assert {'RNGStateHook', 'NonFiniteCheckHook'} <= set(types), types
    assert cfg.train_cfg.get('type') in ('ExactResumeIterBasedTrainLoop',
                                         'EpochBasedTrainLoop'), cfg.train_cfg
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        for name in types:
            assert HOOKS.build(dict(type=name)) is not None
        assert LOOPS.get(cfg.train_cfg.type) is not None


def test_rng_state_round_trip_through_a_weights_only_load(tmp_path):
    import random

    import numpy as np

    from segext.engine.rng_state import capture_rng_state, restore_rng_state

    def draw():
        return (torch.rand(3).tolist(), np.random.rand(3).tolist(),
                np.random.randn(), random.random(), random.gauss(0, 1))

    np.random.randn()  # a cached gaussian is part of numpy's state
    random.gauss(0, 1)  # and of Python's
    torch.save(capture_rng_state(), tmp_path / 'rng.pth')
    expected = draw()
    draw()
    restore_rng_state(torch.load(tmp_path / 'rng.pth', weights_only=True))
    assert draw() == expected
