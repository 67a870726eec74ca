"""The plug-in contract: ``import segext`` (what ``custom_imports`` does)
fills registries and changes nothing in torch, mmengine, mmcv, mmdet or
mmseg.  Checked in a fresh interpreter: the identity of every function,
method and attribute segext used to patch (``segext/utils/compat.py`` up to
13302b7) is the same before and after the import."""
import json
import subprocess
import sys
import textwrap

SNAPSHOT = textwrap.dedent(r'''
    import json, sys
    import torch
    import mmengine.dist.utils as dist_utils
    import mmengine.runner
    from mmengine.fileio.backends import LocalBackend
    from mmengine.hooks import CheckpointHook
    from mmengine.runner import Runner, _flexible_runner, checkpoint, runner
    from mmengine.runner.checkpoint import CheckpointLoader
    from torch.nn.parallel import DistributedDataParallel as DDP

    def snapshot():
        watched = {
            'torch.load': torch.load,
            'torch.serialization.load': torch.serialization.load,
            'SyncBatchNorm.forward': torch.nn.SyncBatchNorm.forward,
            'DDP._passing_sync_batchnorm_handle':
                DDP._passing_sync_batchnorm_handle,
            'DDP.__init__': DDP.__init__,
            'LocalBackend.put': LocalBackend.put,
            'LocalBackend.put_text': LocalBackend.put_text,
            'CheckpointHook._save_checkpoint_with_step':
                CheckpointHook._save_checkpoint_with_step,
            'Runner.wrap_model': Runner.wrap_model,
            'Runner.setup_env': Runner.setup_env,
            'Runner.load_checkpoint': Runner.load_checkpoint,
            'Runner.resume': Runner.resume,
        }
        for name in ('_init_dist_pytorch', '_init_dist_slurm',
                     '_init_dist_mpi', 'init_dist'):
            watched[f'mmengine.dist.utils.{name}'] = getattr(dist_utils, name)
        for module in (checkpoint, runner, _flexible_runner, mmengine.runner):
            watched[f'{module.__name__}.find_latest_checkpoint'] = (
                module.find_latest_checkpoint)
        out = {k: id(v) for k, v in watched.items()}
        out['CheckpointLoader._schemes'] = {
            k: id(v) for k, v in CheckpointLoader._schemes.items()}
        out['safe_globals'] = sorted(
            map(str, torch.serialization.get_safe_globals()))
        return out

    before = snapshot()
    import segext  # noqa: F401
    import mmdet.models, mmseg.models  # what custom_imports' hosts load
    after = snapshot()
    print('SNAPSHOT ' + json.dumps(dict(before=before, after=after)))
''')


def test_import_segext_changes_nothing_upstream(tmp_path):
    proc = subprocess.run([sys.executable, '-c', SNAPSHOT],
                          capture_output=True, text=True, timeout=300,
                          cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines()
            if ln.startswith('SNAPSHOT ')][-1]
    snap = json.loads(line[len('SNAPSHOT '):])
    changed = sorted(k for k in snap['before']
                     if snap['before'][k] != snap['after'][k])
    assert changed == [], f'import segext replaced: {changed}'


def test_segext_configs_select_the_components(repo_root):
    """segext's own configs opt in; the stock config stays stock."""
    import os.path as osp

    from mmengine.config import Config
    cfg = Config.fromfile(
        osp.join(repo_root, 'configs/upsnet/upsnet_r18_fpn_synthetic.py'))
    assert cfg.runner_type == 'SegextRunner'
    assert cfg.default_hooks.checkpoint.type == 'SafeCheckpointHook'
    cfg = Config.fromfile(
        osp.join(repo_root, 'configs/drn/drn-d-22_synthetic.py'))
    assert cfg.runner_type == 'SegextRunner'
    assert cfg.default_hooks.checkpoint.type == 'SafeCheckpointHook'
    stock = Config.fromfile(osp.join(
        repo_root, 'configs/panoptic_fpn/panoptic-fpn_r50_fpn_1x_coco.py'))
    assert 'runner_type' not in stock
    assert stock.default_hooks.checkpoint.type == 'CheckpointHook'
