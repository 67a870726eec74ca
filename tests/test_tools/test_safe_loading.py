"""A crafted checkpoint (its pickle would create a file) through every entry
point of the tools: refused before any of its code runs, one line naming
the file and the global, exit code 2.  Released weights convert without
any opt-in."""
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tests', 'test_utils'))
sys.path.insert(0, osp.join(ROOT, 'tools', 'model_converters'))
from crafted_checkpoints import crafted_checkpoint  # noqa: E402

TINY_SEG = osp.join(ROOT, 'tests', 'data', 'configs', 'tiny-fcn_synthetic.py')
REFUSED = 'was refused: loading it would run code from its pickle ' \
    '(Unsupported global: GLOBAL io.open)'


@pytest.fixture(scope='module')
def data_opts(tmp_path_factory):
    from segext.datasets.synthetic import generate
    root = str(tmp_path_factory.mktemp('synthetic'))
    generate(root, layout='coco', num_train=2, num_val=1, size=(64, 96),
             seed=3)
    return [f'{split}_dataloader.dataset.data_root={root}/'
            for split in ('train', 'val', 'test')]


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / 'marker'
    path = crafted_checkpoint(tmp_path / 'iter_2.pth', marker)
    yield path
    assert not marker.exists(), 'the crafted pickle ran its code'


def _run(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    for key in ('SEGEXT_DEBUG', 'SEGEXT_TRUSTED_CHECKPOINTS'):
        env.pop(key, None)
    return subprocess.run([sys.executable] + args, cwd=str(tmp_path),
                          env=env, capture_output=True, text=True,
                          timeout=600)


def _assert_refused(proc, path):
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if REFUSED in ln]
    assert len(lines) == 1 and path in lines[0], proc.stderr[-3000:]
    assert 'SEGEXT_TRUSTED_CHECKPOINTS' in lines[0]
    assert 'Traceback' not in proc.stderr


@pytest.mark.parametrize('entry', [
    'test.py CHECKPOINT', 'load_from', '--resume PATH', '--resume',
    'init_cfg=Pretrained'
])
def test_tools_refuse_a_crafted_checkpoint(tmp_path, evil, entry, data_opts):
    work = str(tmp_path / 'work')
    train = [osp.join(ROOT, 'tools', 'train.py'), TINY_SEG, '--work-dir', work]
    opts = ['--cfg-options'] + data_opts
    if entry == 'test.py CHECKPOINT':
        args = [osp.join(ROOT, 'tools', 'test.py'), TINY_SEG, evil,
                '--work-dir', work] + opts
    elif entry == 'load_from':
        args = train + opts + [f'load_from={evil}']
    elif entry == '--resume PATH':
        args = train + ['--resume', evil] + opts
    elif entry == '--resume':  # auto: work_dir/last_checkpoint names it
        os.makedirs(work)
        with open(osp.join(work, 'last_checkpoint'), 'w') as f:
            f.write(evil)
        args = train + ['--resume'] + opts
    else:
        args = train + opts + [f'model.pretrained={evil}']
    _assert_refused(_run(args, tmp_path), evil)


def test_stock_mmseg_test_tool_refuses_it_too(tmp_path, evil, data_opts):
    """The stock tool + custom_imports: torch's own refusal (segext no
    longer switches weights_only off for every load)."""
    import mmseg
    stock = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'test.py')
    proc = _run([stock, TINY_SEG, evil, '--work-dir', str(tmp_path / 'w'),
                 '--cfg-options'] + data_opts, tmp_path)
    assert proc.returncode != 0
    assert 'Weights only load failed' in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize('tool', ['drn2segext', 'vgg2segext',
                                  'vgg16bn2segnet'])
def test_converters_refuse_a_crafted_checkpoint(tmp_path, evil, tool,
                                                capsys, monkeypatch):
    import importlib
    monkeypatch.delenv('SEGEXT_TRUSTED_CHECKPOINTS', raising=False)
    converter = importlib.import_module(tool)
    with pytest.raises(SystemExit) as exc:
        converter.main([evil, str(tmp_path / 'out.pth')])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f'{tool}: error: checkpoint {evil} {REFUSED}' in err
    assert not (tmp_path / 'out.pth').exists()
