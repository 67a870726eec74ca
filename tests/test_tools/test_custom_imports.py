"""A stock mmdet config + only ``custom_imports=['segext']`` trains with
segext's tools/train.py, with mmdet's own tools/train.py and with
``mim train mmdet`` -- on the synthetic data in the COCO layout -- and its
checkpoints (stock CheckpointHook: HistoryBuffer and numpy objects) resume
under torch's weights_only=True with segext's tools, and with mmdet's own
train.py given the documented one-line opt-in ``runner_type='SegextRunner'``
(open-mmlab/mmengine#1655)."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'panoptic_fpn',
                  'panoptic-fpn_r50_fpn_1x_coco.py')


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    from segext.datasets.synthetic import generate
    root = tmp_path_factory.mktemp('coco')
    generate(str(root), layout='coco-categories', num_train=2, num_val=1,
             size=(64, 96), seed=5)
    return str(root)


def tiny_options(coco_root, max_epochs=1):
    """Only data location, image size, schedule length and 'no download'."""
    ann = f'{coco_root}/annotations/panoptic_val2017.json'
    seg = f'{coco_root}/annotations/panoptic_val2017/'
    return [
        'model.backbone.init_cfg=None',  # no network: no ImageNet weights
        f'train_cfg.max_epochs={max_epochs}',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        f'train_dataloader.dataset.data_root={coco_root}/',
        f'val_dataloader.dataset.data_root={coco_root}/',
        'train_dataloader.dataset.pipeline.2.scale=(96,64)',
        'val_dataloader.dataset.pipeline.1.scale=(96,64)',
        f'val_evaluator.ann_file={ann}',
        f'val_evaluator.seg_prefix={seg}',
    ]


def upstream_train_script():
    import mmdet
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'train.py')


@pytest.mark.parametrize('launcher', ['segext', 'mmdet', 'mim'])
def test_stock_config_with_custom_imports_trains(tmp_path, coco_root,
                                                 launcher):
    work = str(tmp_path / launcher)
    opts = ['--work-dir', work, '--cfg-options'] + tiny_options(coco_root)
    if launcher == 'segext':
        cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), CONFIG] + opts
    elif launcher == 'mmdet':
        cmd = [sys.executable, upstream_train_script(), CONFIG] + opts
    else:
        mim = shutil.which('mim', path=osp.dirname(sys.executable))
        assert mim, 'openmim is part of the environment (tools/setup_env.sh)'
        cmd = [mim, 'train', 'mmdet', CONFIG, '--gpus', '0', '-y'] + opts
    log = run(cmd, tmp_path)
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    assert 'coco_panoptic/PQ' in log, log[-3000:]
    if launcher == 'mim':
        return
    # one more epoch from the stock hook's checkpoint
    cmd = cmd[:cmd.index('--cfg-options') + 1] + tiny_options(
        coco_root, max_epochs=2)
    cmd[cmd.index('--work-dir'):cmd.index('--work-dir')] = ['--resume']
    if launcher == 'mmdet':
        cmd.append('runner_type=SegextRunner')  # the opt-in
    log = run(cmd, tmp_path)
    assert 'resumed epoch: 1, iter: ' in log, log[-3000:]
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))


def run(cmd, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=str(cwd), env=env, timeout=900,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr
