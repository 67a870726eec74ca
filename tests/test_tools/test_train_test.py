"""tools/train.py and tools/test.py end to end, as a user runs them.

Every test starts the real tools in a subprocess on a tiny generated copy of
the synthetic dataset: 2-iteration train + test for an mmseg- and an
mmdet-scoped config, resume after a killed run, and the clear errors.
"""
import glob
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_SEG = osp.join(ROOT, 'tests', 'data', 'configs', 'tiny-fcn_synthetic.py')
PANOPTIC_FPN = osp.join(ROOT, 'configs', 'panoptic_fpn',
                        'panoptic-fpn_r18_fpn_synthetic.py')


def run_tool(args, timeout=600, check=True):
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    env.pop('SEGEXT_DEBUG', None)
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f'{args} exited {proc.returncode}\n--- stdout\n'
            f'{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}')
    return proc


@pytest.fixture(scope='module')
def data_root(tiny_synthetic_coco):
    return tiny_synthetic_coco


def seg_opts(data_root):
    return ['--cfg-options'] + [
        f'{split}_dataloader.dataset.data_root={data_root}/'
        for split in ('train', 'val', 'test')
    ]


def panoptic_opts(data_root, iters=2):
    ann = f'{data_root}/annotations/panoptic_val2017.json'
    seg = f'{data_root}/annotations/panoptic_val2017/'
    opts = [f'{split}_dataloader.dataset.data_root={data_root}/'
            for split in ('train', 'val', 'test')]
    opts += [f'{split}_evaluator.0.ann_file={ann}' for split in ('val', 'test')]
    opts += [f'{split}_evaluator.0.seg_prefix={seg}'
             for split in ('val', 'test')]
    opts += [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
             f'default_hooks.checkpoint.interval={iters}']
    return ['--cfg-options'] + opts


def last_json_record(work_dir, key_prefix):
    for path in sorted(glob.glob(osp.join(work_dir, '**', '*.json'),
                                 recursive=True),
                       key=osp.getmtime, reverse=True):
        with open(path) as f:
            for line in reversed(f.read().splitlines()):
                rec = json.loads(line)
                if any(k.startswith(key_prefix) for k in rec):
                    return rec
    raise AssertionError(f'no {key_prefix} metrics under {work_dir}')


def test_mmseg_train_then_test(tmp_path, data_root):
    work = str(tmp_path / 'seg')
    run_tool(['tools/train.py', TINY_SEG, '--work-dir', work] +
             seg_opts(data_root))
    assert osp.isfile(osp.join(work, 'iter_4.pth'))
    assert 'mIoU' in last_json_record(work, 'mIoU')
    # what the inferencers and the visualiser read (docs/inference.md)
    meta = _checkpoint_meta(osp.join(work, 'iter_4.pth'))['dataset_meta']
    assert len(meta['classes']) == len(meta['palette']) > 0
    out_dir = str(tmp_path / 'pred')
    run_tool(['tools/test.py', TINY_SEG, osp.join(work, 'iter_4.pth'),
              '--work-dir', work, '--show-dir', 'vis', '--out', out_dir] +
             seg_opts(data_root))
    # painted overlays and raw predictions for both val images
    assert len(glob.glob(osp.join(work, 'vis', '**', '*.png'),
                         recursive=True)) == 2
    assert len(glob.glob(osp.join(out_dir, '*.png'))) == 2


def test_mmdet_panoptic_train_then_test(tmp_path, data_root):
    work = str(tmp_path / 'pan')
    run_tool(['tools/train.py', PANOPTIC_FPN, '--work-dir', work] +
             panoptic_opts(data_root))
    ckpt = osp.join(work, 'iter_2.pth')
    assert osp.isfile(ckpt)
    meta = _checkpoint_meta(ckpt)['dataset_meta']
    assert len(meta['classes']) == len(meta['palette']) == len(
        meta['thing_classes']) + len(meta['stuff_classes'])
    out = str(tmp_path / 'results.pkl')
    run_tool(['tools/test.py', PANOPTIC_FPN, ckpt, '--work-dir', work,
              '--show-dir', 'vis', '--out', out] + panoptic_opts(data_root))
    rec = last_json_record(work, 'coco_panoptic/')
    for key in ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st'):
        assert f'coco_panoptic/{key}' in rec
    assert len(glob.glob(osp.join(work, '*', 'vis', '*.png'))) == 2
    assert osp.getsize(out) > 0
    # resume under torch's weights_only=True (SafeCheckpointHook's files)
    assert _checkpoint_iter(ckpt) == 2
    done = run_tool(['tools/train.py', PANOPTIC_FPN, '--work-dir', work,
                     '--resume'] + panoptic_opts(data_root, iters=4))
    assert 'resumed epoch: 0, iter: 2' in done.stdout + done.stderr
    assert _checkpoint_iter(osp.join(work, 'iter_4.pth')) == 4


def _checkpoint_meta(path):
    from mmengine.runner.checkpoint import _load_checkpoint
    return _load_checkpoint(path, map_location='cpu')['meta']


def _checkpoint_iter(path):
    import torch
    return torch.load(path, map_location='cpu',
                      weights_only=True)['meta']['iter']


def test_resume_after_killed_run(tmp_path, data_root):
    """Kill a run after its 2nd checkpoint, then ``--resume`` (auto)."""
    work = str(tmp_path / 'resume')
    opts = seg_opts(data_root) + [
        'train_cfg.max_iters=60', 'train_cfg.val_interval=1000',
        'default_hooks.checkpoint.interval=4']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.Popen(
        [sys.executable, 'tools/train.py', TINY_SEG, '--work-dir', work] +
        opts, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    try:
        while not osp.isfile(osp.join(work, 'iter_8.pth')):
            assert proc.poll() is None, 'training ended before iter 8'
            assert time.time() < deadline, 'no iter_8.pth within 300 s'
            time.sleep(0.2)
        time.sleep(0.5)  # let the next iterations run: we kill mid-run
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with open(osp.join(work, 'last_checkpoint')) as f:
        last = f.read().strip()
    resumed_from = _checkpoint_iter(last)
    assert 8 <= resumed_from < 60

    # a fresh run in that work dir is refused: it would overwrite them
    refused = run_tool(['tools/train.py', TINY_SEG, '--work-dir', work] + opts,
                       check=False)
    assert refused.returncode == 2
    assert 'already holds checkpoints' in refused.stderr

    done = run_tool(['tools/train.py', TINY_SEG, '--work-dir', work,
                     '--resume'] + opts)
    log = done.stdout + done.stderr
    assert f'resumed epoch: 0, iter: {resumed_from}' in log, log[-3000:]
    assert osp.isfile(osp.join(work, 'iter_60.pth'))
    assert _checkpoint_iter(osp.join(work, 'iter_60.pth')) == 60


@pytest.mark.parametrize('case', [
    'missing_config', 'bad_scope', 'unknown_type', 'missing_checkpoint',
    'missing_data_root', 'bad_cfg_option_value'
])
def test_clear_errors(tmp_path, data_root, case):
    """Bad input: exit 2, one line naming the culprit, no traceback."""
    tool, args, expect = 'tools/train.py', None, None
    if case == 'missing_config':
        args, expect = ['configs/nope.py'], 'config file not found: configs/nope.py'
    elif case == 'bad_scope':
        cfg = tmp_path / 'bad_scope.py'
        cfg.write_text("_base_ = ['%s']\ndefault_scope = 'mmpose'\n" % TINY_SEG)
        args, expect = [str(cfg)], "default_scope must be one of"
    elif case == 'unknown_type':
        args = [TINY_SEG, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                'model.backbone.type=NoSuchNet']
        expect = 'NoSuchNet is not in the'
    elif case == 'missing_checkpoint':
        tool = 'tools/test.py'
        args = [TINY_SEG, str(tmp_path / 'gone.pth')]
        expect = f'checkpoint file not found: {tmp_path}/gone.pth'
    elif case == 'missing_data_root':
        args = [TINY_SEG, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                f'train_dataloader.dataset.data_root={tmp_path}/nodata/']
        expect = 'nodata'
    elif case == 'bad_cfg_option_value':
        args = [TINY_SEG, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                'model.decode_head.num_classes=six']
        expect = 'num_classes'
    proc = run_tool([tool] + args, check=False)
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert expect in proc.stderr, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]


def test_mim_train_and_test_segext(tmp_path, data_root):
    """``mim train segext`` / ``mim test segext`` find segext/.mim/tools."""
    import shutil
    mim = shutil.which('mim', path=osp.dirname(sys.executable))
    assert mim, 'openmim is part of the environment (tools/setup_env.sh)'
    assert osp.isfile(osp.join(ROOT, 'segext', '.mim', 'tools', 'train.py'))
    work = str(tmp_path / 'mim')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    for cmd in (
        [mim, 'train', 'segext', TINY_SEG, '--gpus', '0', '-y',
         '--work-dir', work] + seg_opts(data_root),
        [mim, 'test', 'segext', TINY_SEG, '--checkpoint',
         osp.join(work, 'iter_4.pth'), '--gpus', '0', '-y',
         '--work-dir', work] + seg_opts(data_root),
    ):
        proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, timeout=600,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    assert 'mIoU' in last_json_record(work, 'mIoU')
