"""tools/analysis_tools/benchmark_camvid.py end to end on the real CamVid at
a tiny budget: SegNet's, DRN-D-22's, the context stage's and the FCN
baseline's CamVid configs each train 2 iterations on the real files (small
crops of the half-size images) in a child process and validate on 2 real
val images at 360x480; the table, the two PNGs, the checkpoints and the
two-stage hand-over are checked.  Skipped without the data (``real_camvid``
in conftest.py)."""
import importlib.util
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(ROOT, 'tools', 'analysis_tools', 'benchmark_camvid.py')
spec = importlib.util.spec_from_file_location('benchmark_camvid', SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

CLASSES = ('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree',
           'SignSymbol', 'Fence', 'Car', 'Pedestrian', 'Bicyclist')


@pytest.fixture(scope='module')
def run(real_camvid, tmp_path_factory):
    work = str(tmp_path_factory.mktemp('bench') / 'run')
    cmd = [sys.executable, SCRIPT, '--data-root', real_camvid,
           '--work-dir', work, '--iters', '2', '--val-interval', '1',
           '--context-iters', '2', '--context-val-interval', '2',
           '--batch', '2', '--crop', '64', '96', '--num-val', '2',
           '--overlay', '2', '--jobs', '2']
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                         timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    with open(osp.join(work, 'results.json')) as f:
        results = {r['model']: r for r in json.load(f)['results']}
    return work, out.stdout, results


def test_every_model_trains_and_validates_on_real_files(run):
    work, stdout, results = run
    assert list(results) == list(bench.ORDER)
    for name, r in results.items():
        stage2 = bool(bench.MODELS[name].get('stage1'))
        assert r['iters'] == 2 and r['n_val'] == 2
        # one validation per --val-interval, the last at the final iteration
        assert [p['iter'] for p in r['curve']] == ([2] if stage2 else [1, 2])
        final = r['final']
        for key in ('aAcc', 'mAcc', 'mIoU',
                    *(f'IoU.{c}' for c in CLASSES)):
            assert 0 <= final[key] <= 100, (name, key, final[key])
        assert np.isclose(final['mIoU'], np.nanmean(
            [final[f'IoU.{c}'] for c in CLASSES]), atol=0.02)
        assert r['peak_rss_mib'] > 100 and r['cpu_s'] > 0
        assert r['train_s'] > 0 and r['val_s'] > 0
        assert osp.isfile(r['checkpoint'])
        assert r['checkpoint'] == osp.join(work, name, 'iter_2.pth')
        assert r['checkpoint'] in stdout
        assert f'| {r["label"]} | {final["aAcc"]:.1f} |' in stdout
        for path in r['predictions']:  # full-resolution label maps
            pred = np.asarray(Image.open(path))
            assert pred.shape == (360, 480) and pred.max() <= 10


def test_context_stage_starts_from_the_trained_front_end(run):
    work, _, results = run

    def weights(name):
        return torch.load(osp.join(work, name, bench.WEIGHTS_FILE),
                          map_location='cpu', weights_only=True)['state_dict']

    front, ctx = weights('drn'), weights('drn-context')
    new = sorted(set(ctx) - set(front))
    assert new and all(k.startswith('decode_head.context.') for k in new)
    # frozen: backbone (BN statistics included) and classifier unchanged
    for key, value in front.items():
        if key.startswith('backbone.') or key.startswith(
                'decode_head.conv_seg.'):
            assert torch.equal(ctx[key], value), key
    assert results['drn-context']['trained_params'] < results[
        'drn-context']['params']


def test_pngs_are_written(run):
    work, stdout, _ = run
    for name in ('learning_curves.png', 'overlays.png'):
        path = osp.join(work, name)
        assert path in stdout
        with Image.open(path) as im:
            assert im.format == 'PNG' and min(im.size) > 200


def test_missing_data_is_one_line_and_exit_2(tmp_path):
    out = subprocess.run(
        [sys.executable, SCRIPT, '--data-root', str(tmp_path),
         '--work-dir', str(tmp_path / 'w')],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 2
    assert f'--data-root {tmp_path}: no train/ folder' in out.stderr
    assert 'Traceback' not in out.stderr
