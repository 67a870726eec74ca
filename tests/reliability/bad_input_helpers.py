"""Shared pieces of the bad-input tests (tests/reliability/test_bad_*.py):
the tools as a user runs them, a tiny generated dataset and broken copies."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_SEG = osp.join(ROOT, 'tests', 'data', 'configs', 'tiny-fcn_synthetic.py')
PANOPTIC_FPN = osp.join(ROOT, 'configs', 'panoptic_fpn',
                        'panoptic-fpn_r18_fpn_synthetic.py')
SPLITS = ('train', 'val', 'test')


def generate_data(root: str) -> str:
    """4 train + 2 val 64x96 images in the 'coco' layout (semantic PNGs
    and panoptic json/PNGs)."""
    from segext.datasets.synthetic import generate
    generate(root, layout='coco', num_train=4, num_val=2, size=(64, 96),
             seed=3)
    return root


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    """Fixture: the generated data, shared by a test module."""
    return generate_data(str(tmp_path_factory.mktemp('synthetic')))


@pytest.fixture(scope='module')
def fcn_checkpoint(tmp_path_factory):
    """Fixture: a checkpoint of the tiny mmseg model (6 classes)."""
    return save_model_checkpoint(
        TINY_SEG, str(tmp_path_factory.mktemp('ckpt') / 'fcn.pth'))


def broken_copy(data_root: str, tmp_path) -> str:
    """A copy of the generated data that a test may break."""
    copy = str(tmp_path / 'data')
    shutil.copytree(data_root, copy)
    return copy


def first_file(folder: str) -> str:
    return osp.join(folder, sorted(os.listdir(folder))[0])


def run_tool(args, timeout=600):
    """``python tools/<tool>.py ARGS`` in the repo; returns the process."""
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    env.pop('SEGEXT_DEBUG', None)
    return subprocess.run([sys.executable] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def seg_options(data_root: str, iters: int = 2) -> list:
    """--cfg-options of a 2-iteration tiny-fcn run on ``data_root``."""
    return [f'{split}_dataloader.dataset.data_root={data_root}/'
            for split in SPLITS] + [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={iters}']


def panoptic_options(data_root: str, iters: int = 2) -> list:
    ann = f'{data_root}/annotations/panoptic_val2017.json'
    seg = f'{data_root}/annotations/panoptic_val2017/'
    return [f'{split}_dataloader.dataset.data_root={data_root}/'
            for split in SPLITS] + [
        f'{split}_evaluator.0.{key}={value}' for split in ('val', 'test')
        for key, value in (('ann_file', ann), ('seg_prefix', seg))] + [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={iters}']


def assert_one_line_error(proc, *expected):
    """Exit 2, every ``expected`` text in stderr, no traceback."""
    out = f'--- stdout\n{proc.stdout[-2000:]}\n--- stderr\n{proc.stderr[-4000:]}'
    assert proc.returncode == 2, out
    assert 'Traceback' not in proc.stderr, out
    error = [line for line in proc.stderr.splitlines()
             if ': error: ' in line]
    assert error, out
    for text in expected:
        assert text in error[0], out
    return error[0]


def save_model_checkpoint(config: str, path: str, **overrides) -> str:
    """A checkpoint of the (untrained) model of ``config``, as mmengine
    writes one: ``{'meta': ..., 'state_dict': ...}``."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(overrides)
    init_default_scope(cfg.default_scope)
    from mmengine.registry import MODELS
    model = MODELS.build(cfg.model)
    torch.save({'meta': {'iter': 0}, 'state_dict': model.state_dict()}, path)
    return path


class Result:
    """What a tool's ``main(argv)`` left: exit code, stdout, stderr."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_main(tool: str, args, capsys) -> Result:
    """``tools/<tool>.py``'s ``main(args)`` in this process (no start-up
    cost): for the cases that fail before or early in a run."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        f'segext_tool_{tool}', osp.join(ROOT, 'tools', f'{tool}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.environ.pop('SEGEXT_DEBUG', None)
    capsys.readouterr()
    try:
        module.main(list(args))
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    except Exception:  # a traceback is what the user would see
        import traceback
        traceback.print_exc()
        code = 1
    out = capsys.readouterr()
    return Result(code, out.out, out.err)
