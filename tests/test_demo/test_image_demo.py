"""demo/image_demo.py on a generated scene for each model family: UPSNet
(mmdet, panoptic), DRN, DRN + context module, SegNet (mmseg, semantic).

Checkpoints are saved from freshly built toy models (one with
``meta['dataset_meta']``, one without), so the test checks the plumbing --
overlay written, raw prediction consistent with the model's own output --
not accuracy.
"""
import glob
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(ROOT, 'demo', 'image_demo.py')

pytestmark = pytest.mark.usefixtures('one_thread')

FAMILIES = {
    'upsnet': 'configs/upsnet/upsnet_r18_fpn_synthetic.py',
    'drn': 'configs/drn/drn-d-22_synthetic.py',
    'context': 'configs/drn/drn-d-22-context_synthetic.py',
    'segnet': 'configs/segnet/segnet_vgg16-bn_synthetic.py',
}


def _demo_module():
    spec = importlib.util.spec_from_file_location('segext_image_demo', DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _demo_module()


@pytest.fixture(scope='module')
def scene(tmp_path_factory):
    """One generated 192x256 val image (a JPEG, as the dataset's)."""
    from segext.datasets.synthetic import generate
    root = tmp_path_factory.mktemp('scene')
    generate(str(root), layout='coco', num_train=1, num_val=1, seed=5)
    return sorted(glob.glob(str(root / 'val2017' / '*.jpg')))[0]


def save_fresh_checkpoint(config, path, with_meta=True):
    cfg = Config.fromfile(osp.join(ROOT, config))
    init_default_scope(cfg.default_scope)
    from mmengine.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    meta = dict(dataset_meta=demo.config_dataset_meta(cfg)) if with_meta \
        else {}
    torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
    return path


@pytest.mark.parametrize('family', list(FAMILIES))
def test_demo_writes_overlay_and_raw_prediction(family, scene, tmp_path):
    config = FAMILIES[family]
    ckpt = save_fresh_checkpoint(config, str(tmp_path / 'model.pth'))
    out = tmp_path / 'out'
    demo.main([scene, osp.join(ROOT, config), '--weights', ckpt,
               '--out-dir', str(out)])
    stem = osp.splitext(osp.basename(scene))[0]
    image = mmcv.imread(scene)
    overlay = mmcv.imread(str(out / 'vis' / f'{stem}.png'))
    assert overlay.shape == image.shape
    raw = mmcv.imread(str(out / 'preds' / f'{stem}.png'), flag='unchanged')
    assert raw.shape[:2] == image.shape[:2]
    with open(out / 'preds' / f'{stem}.json') as f:
        record = json.load(f)

    # the raw files hold exactly what the library's own API predicts
    cfg = Config.fromfile(osp.join(ROOT, config))
    model = demo.load_model(cfg, cfg.default_scope, ckpt, 'cpu')
    result = demo.infer(model, cfg.default_scope, scene)
    if cfg.default_scope == 'mmdet':
        from mmdet.evaluation.functional import INSTANCE_OFFSET
        from panopticapi.utils import rgb2id
        pan = result.pred_panoptic_seg.sem_seg[0].numpy()
        void = len(model.dataset_meta['classes'])
        expected = np.where(pan % INSTANCE_OFFSET == void, 0, pan)
        np.testing.assert_array_equal(rgb2id(raw[:, :, ::-1]), expected)
        ids = {s['id'] for s in record['segments_info']}
        assert ids == set(np.unique(pan)) - {
            i for i in np.unique(pan) if i % INSTANCE_OFFSET == void}
        for seg in record['segments_info']:
            assert seg['area'] == int((pan == seg['id']).sum())
            assert seg['name'] == model.dataset_meta['classes'][
                seg['category_id']]
    else:
        labels = result.pred_sem_seg.data[0].numpy()
        np.testing.assert_array_equal(raw, labels)
        assert {r['label'] for r in record['labels']} == set(
            np.unique(labels))


def test_meta_less_checkpoint_uses_the_config_classes(scene, tmp_path):
    config = FAMILIES['upsnet']
    ckpt = save_fresh_checkpoint(config, str(tmp_path / 'bare.pth'),
                                 with_meta=False)
    cfg = Config.fromfile(osp.join(ROOT, config))
    with pytest.warns(UserWarning, match="config's test dataset"):
        model = demo.load_model(cfg, 'mmdet', ckpt, 'cpu')
    assert tuple(model.dataset_meta['classes']) == tuple(
        cfg.metainfo['classes'])
    assert model.dataset_meta['palette'] == cfg.metainfo['palette']
    demo.main([osp.dirname(scene), osp.join(ROOT, config), '--weights',
               ckpt, '--out-dir', str(tmp_path / 'out')])
    assert len(os.listdir(tmp_path / 'out' / 'vis')) == 1


@pytest.mark.parametrize('case', ['image', 'folder', 'config', 'weights',
                                  'scope'])
def test_bad_input_is_one_line_exit_2(case, scene, tmp_path, capsys):
    config = osp.join(ROOT, FAMILIES['drn'])
    weights = str(tmp_path / 'w.pth')
    torch.save(dict(state_dict={}), weights)
    args = {
        'image': [str(tmp_path / 'missing.png'), config, '--weights', weights],
        'folder': [str(tmp_path), config, '--weights', weights],
        'config': [scene, str(tmp_path / 'nope.py'), '--weights', weights],
        'weights': [scene, config, '--weights', str(tmp_path / 'no.pth')],
        'scope': [scene, str(tmp_path / 'plain.py'), '--weights', weights],
    }[case]
    (tmp_path / 'plain.py').write_text("default_scope = 'mmpretrain'\n")
    with pytest.raises(SystemExit) as exc:
        demo.main(args + ['--out-dir', str(tmp_path / 'o')])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith('image_demo: error:') and len(err) == 2, err
    assert 'Traceback' not in '\n'.join(err)


def test_cli_exit_code(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('SEGEXT_DEBUG', None)
    proc = subprocess.run(
        [sys.executable, DEMO, str(tmp_path / 'missing.jpg'),
         osp.join(ROOT, FAMILIES['segnet']), '--weights', 'x.pth'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert 'weights file not found: x.pth' in proc.stderr
    assert 'Traceback' not in proc.stderr
