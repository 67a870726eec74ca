"""The two toy panoptic configs of the main job resolve exactly as they did
before they shared configs/_base_/toy_panoptic_r18_fpn_synthetic.py (a
snapshot of 13302b7's resolved dicts; ``default_hooks`` left out, as each
config keeps its own); the only new key is the shared ``toy_r18_fpn``,
which both models are built from."""
import json
import os.path as osp

import pytest
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SNAPSHOT = osp.join(REPO, 'tests', 'data', 'configs',
                    'toy_panoptic_resolved.json')
CONFIGS = ('configs/upsnet/upsnet_r18_fpn_synthetic.py',
           'configs/panoptic_fpn/panoptic-fpn_r18_fpn_synthetic.py')


def resolved(path):
    cfg = Config.fromfile(osp.join(REPO, path)).to_dict()
    cfg.pop('default_hooks')
    # through JSON as the snapshot was (tuples -> lists)
    return json.loads(json.dumps(cfg, sort_keys=True, default=repr))


@pytest.mark.parametrize('path', CONFIGS)
def test_resolves_as_before_the_shared_base(path):
    with open(SNAPSHOT) as f:
        before = json.load(f)[path]
    now = resolved(path)
    shared = now.pop('toy_r18_fpn')
    assert now == before
    assert_merged(shared, now['model'], 'model')


def assert_merged(part, into, where):
    """Every value of the partial dict ``part`` is in ``into``."""
    for key, value in part.items():
        if isinstance(value, dict):
            assert_merged(value, into[key], f'{where}.{key}')
        else:
            assert into[key] == value, f'{where}.{key}'


def test_the_alias_says_what_it_is():
    with open(osp.join(REPO, 'configs', 'upsnet_coco.py')) as f:
        lines = [line for line in f if line.strip()]
    assert lines[0].startswith('# ') and 'upsnet_r50_fpn_1x_coco' in lines[0]
    assert len([line for line in lines if line.startswith('#')]) == 1
