"""tools/analysis_tools/benchmark_upsnet.py --parts dense: the training
step's FLOPs count what autograd runs (no backward through frozen layers),
and the table's efficiency divides each pass's time ratio by that pass's
FLOP ratio."""
import contextlib
import importlib.util
import io
import os.path as osp

import pytest
import torch
from torch import nn

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'benchmark_upsnet.py')

spec = importlib.util.spec_from_file_location('benchmark_upsnet', TOOL)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

pytestmark = pytest.mark.usefixtures('one_thread')


class _Head(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 4, 1)

    def loss(self, feats, samples):
        return dict(loss_seg=self.conv(feats).mean(), acc=torch.tensor(1.))


class _ToyDetector(nn.Module):
    """stem (3 -> 8, 3x3) -> body (8 -> 8, 3x3) -> head (8 -> 4, 1x1)."""

    def __init__(self, freeze_stem):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.body = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.semantic_head = _Head()
        self.stem.requires_grad_(not freeze_stem)

    def extract_feat(self, img):
        return self.body(self.stem(img))


@pytest.mark.parametrize('freeze_stem', [True, False])
def test_train_gmacs_count_the_backward_autograd_runs(freeze_stem):
    h, w = 6, 10
    stem, body, head = (h * w * c for c in (3 * 8 * 9, 8 * 8 * 9, 8 * 4))
    if freeze_stem:
        # frozen stem: its forward only; the body's input needs no gradient
        expected = stem + 2 * body + 3 * head
    else:
        expected = 2 * stem + 3 * body + 3 * head
    model = _ToyDetector(freeze_stem)
    img = torch.rand(1, 3, h, w)
    gmacs = bench.dense_train_gmacs(model, img, [])
    assert gmacs * 1e9 == pytest.approx(expected, rel=1e-9)
    assert all(p.grad is None for p in model.parameters())


def _cells(line):
    return [c.strip().strip('*') for c in line.split('|')[1:-1]]


def test_dense_table_divides_by_each_pass_flop_ratio():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bench.main(['--parts', 'dense', '--dense-sizes', '96x64',
                    '--repeats', '1', '--no-whole', '--threads', '1'])
    lines = out.getvalue().splitlines()
    header = _cells(next(ln for ln in lines if ln.startswith('| image')))
    rows = {r[2]: dict(zip(header, r)) for r in
            (_cells(ln) for ln in lines if ln.startswith('| 96x64'))}
    assert set(rows) == {'fwd', 'fwd+bwd'}
    fwd, train = rows['fwd'], rows['fwd+bwd']
    for row in rows.values():
        pf, up = float(row['P-FPN GMACs']), float(row['UPSNet GMACs'])
        # the GMACs are printed to 0.1
        assert float(row['FLOP ratio']) == pytest.approx(
            up / pf, abs=0.05 * (1 + up / pf) / pf + 1e-3)
        assert float(row['efficiency']) == pytest.approx(
            float(row['time ratio']) / float(row['FLOP ratio']), abs=0.01)
        assert float(row['efficiency vs the forward FLOP ratio']) == \
            pytest.approx(float(row['time ratio']) / float(fwd['FLOP ratio']),
                          abs=0.01)
    # frozen stem and stage 1 (R50, frozen_stages=1): fewer than 3x the
    # forward's multiply-adds; they are a smaller share of UPSNet's work,
    # so its training step's FLOP ratio is the larger
    for model in ('P-FPN GMACs', 'UPSNet GMACs'):
        assert 2 * float(fwd[model]) < float(train[model]) < \
            3 * float(fwd[model])
    assert float(train['FLOP ratio']) > float(fwd['FLOP ratio'])
