"""tools/model_converters/drn2segext.py against a re-implementation of the
DRN authors' module layout (written from docs/drn.md's facts: ``layer0``
Sequential stem (D) or ``conv1``/``bn1`` (C), ``layer1..8``, ``fc``; blocks
``conv1/bn1/conv2/bn2[/conv3/bn3]/downsample.0/.1``; plain levels
``Sequential(Conv2d, BatchNorm2d, ReLU, ...)``)."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.runner import load_checkpoint
from torch import nn

from segext.models.backbones import DRN

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
spec = importlib.util.spec_from_file_location(
    'drn2segext', osp.join(ROOT, 'tools', 'model_converters', 'drn2segext.py'))
drn2segext = importlib.util.module_from_spec(spec)
spec.loader.exec_module(drn2segext)

pytestmark = pytest.mark.usefixtures('one_thread')


# --- the authors' layout ---------------------------------------------------
def conv3x3(cin, cout, stride=1, dilation=1):
    return nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False)


class AuthorsBasic(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, downsample=None, dilation=1,
                 residual=True):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.residual = residual

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.residual:
            out = out + (self.downsample(x) if self.downsample else x)
        return self.relu(out)


class AuthorsBottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, downsample=None, dilation=1,
                 residual=True):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (self.downsample(x) if self.downsample else x))


class AuthorsDRN(nn.Module):
    """DRN-C/D with the authors' module names (and C-58's unused level-7
    downsample, which they build whenever channels change)."""

    def __init__(self, arch, block, sizes):
        super().__init__()
        ch = (16, 32, 64, 128, 256, 512, 512, 512)
        self.arch, self.cin = arch, 16
        if arch == 'C':
            self.conv1 = nn.Conv2d(3, 16, 7, 1, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.relu = nn.ReLU()
            self.layer1 = self.blocks(AuthorsBasic, 16, sizes[0])
            self.layer2 = self.blocks(AuthorsBasic, 32, sizes[1], stride=2)
        else:
            self.layer0 = nn.Sequential(
                nn.Conv2d(3, 16, 7, 1, 3, bias=False), nn.BatchNorm2d(16),
                nn.ReLU())
            self.layer1 = self.convs(16, sizes[0])
            self.layer2 = self.convs(32, sizes[1], stride=2)
        self.layer3 = self.blocks(block, 64, sizes[2], stride=2)
        self.layer4 = self.blocks(block, 128, sizes[3], stride=2)
        self.layer5 = self.blocks(block, 256, sizes[4], dilation=2)
        self.layer6 = self.blocks(block, 512, sizes[5], dilation=4)
        if arch == 'C':
            self.layer7 = self.blocks(AuthorsBasic, 512, sizes[6], dilation=2,
                                      residual=False)
            self.layer8 = self.blocks(AuthorsBasic, 512, sizes[7],
                                      residual=False)
        else:
            self.layer7 = self.convs(512, sizes[6], dilation=2)
            self.layer8 = self.convs(512, sizes[7])
        self.fc = nn.Conv2d(ch[-1], 1000, 1)

    def blocks(self, block, planes, n, stride=1, dilation=1, residual=True):
        out = planes * block.expansion
        down = None
        if stride != 1 or self.cin != out:
            down = nn.Sequential(
                nn.Conv2d(self.cin, out, 1, stride, bias=False),
                nn.BatchNorm2d(out))
        layers = [block(self.cin, planes, stride, down, dilation, residual)]
        self.cin = out
        layers += [block(out, planes, 1, None, dilation, residual)
                   for _ in range(n - 1)]
        return nn.Sequential(*layers)

    def convs(self, planes, n, stride=1, dilation=1):
        mods = []
        for i in range(n):
            mods += [conv3x3(self.cin, planes, stride if i == 0 else 1,
                             dilation),
                     nn.BatchNorm2d(planes), nn.ReLU()]
            self.cin = planes
        return nn.Sequential(*mods)

    def forward(self, x):  # the segmentation trunk: no avgpool / fc
        if self.arch == 'C':
            x = self.relu(self.bn1(self.conv1(x)))
        else:
            x = self.layer0(x)
        for i in range(1, 9):
            x = getattr(self, f'layer{i}')(x)
        return x


def authors_model(arch, depth):
    block, sizes = DRN.arch_settings[arch][depth]
    return AuthorsDRN(
        arch, AuthorsBottleneck if block.expansion == 4 else AuthorsBasic,
        sizes)


def randomize(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def quiet(*_):
    pass


# --- tests ------------------------------------------------------------------
@pytest.mark.parametrize('arch,depth', [('D', 22), ('C', 26), ('C', 58)])
def test_convert_load_strict_identical_outputs(arch, depth):
    src = randomize(authors_model(arch, depth))
    log = []
    state, a, d = drn2segext.convert(src.state_dict(), log=log.append)
    assert (a, d) == (arch, depth)
    model = DRN(arch=arch, depth=depth, out_indices=(7, )).eval()
    model.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], src(x), rtol=1e-4, atol=1e-5)
    dropped = [m for m in log if m.startswith('dropped')]
    if (arch, depth) == ('C', 58):
        assert any('layer7.0.downsample.0.weight' in m for m in dropped)
        assert len(dropped) == 2 + 6  # fc + downsample conv/BN tensors
    else:
        assert len(dropped) == 2  # fc.weight, fc.bias


@pytest.mark.parametrize('arch,depth', [
    (a, d) for a in 'CD' for d in DRN.arch_settings[a]])
def test_every_authors_variant_is_inferred_and_fits(arch, depth):
    with torch.device('meta'):  # keys and shapes only
        src = authors_model(arch, depth).state_dict()
    assert drn2segext.infer_variant(src) == (arch, depth)
    state, _, _ = drn2segext.convert(src, log=quiet)
    with torch.device('meta'):
        target = DRN(arch=arch, depth=depth).state_dict()
    assert list(state) == list(target)


def test_cli_old_dataparallel_checkpoint_then_init_cfg(tmp_path, capsys):
    src = randomize(authors_model('D', 22))
    # classify.py-style: {'state_dict'} + DataParallel 'module.' prefix, and
    # no BN num_batches_tracked (PyTorch < 0.4.1)
    sd = {f'module.{k}': v for k, v in src.state_dict().items()
          if not k.endswith('num_batches_tracked')}
    torch.save({'epoch': 120, 'arch': 'drn_d_22', 'state_dict': sd},
               tmp_path / 'authors.pth')
    drn2segext.main([str(tmp_path / 'authors.pth'), str(tmp_path / 'o.pth'),
                     '--arch', 'D', '--depth', '22'])
    out = capsys.readouterr().out
    assert 'filled' in out and 'saved DRN-D-22' in out
    model = DRN(arch='D', depth=22, out_indices=(7, ), init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'o.pth')))
    model.init_weights()
    model.eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], src(x), rtol=1e-4, atol=1e-5)
    # and through mmengine's load_checkpoint (strict)
    load_checkpoint(DRN(arch='D', depth=22), str(tmp_path / 'o.pth'),
                    strict=True)


def test_drn_a_from_torchvision_resnet_layout():
    # DRN-A's names are torchvision's ResNet names: conv1/bn1/layer1-4/fc
    with torch.device('meta'):
        target = DRN(arch='A', depth=50).state_dict()
    src = {('conv1.' + k[len('stem.conv.'):]) if k.startswith('stem.conv.')
           else ('bn1.' + k[len('stem.bn.'):]) if k.startswith('stem.bn.')
           else k: v for k, v in target.items()}
    with torch.device('meta'):
        src['fc.weight'] = torch.empty(1000, 2048)
        src['fc.bias'] = torch.empty(1000)
    assert drn2segext.infer_variant(src) == ('A', 50)
    state, _, _ = drn2segext.convert(src, log=quiet)
    assert list(state) == list(target)


def test_errors_name_the_key():
    with torch.device('meta'):
        src = authors_model('D', 22).state_dict()
    bad = dict(src, **{'layer9.0.weight': src['layer8.0.weight']})
    with pytest.raises(drn2segext.ConversionError,
                       match=r"unknown key 'layer9.0.weight'"):
        drn2segext.convert(bad, log=quiet)
    # D-22 weights into D-38: the first level-3 block fits, counts do not
    with pytest.raises(drn2segext.ConversionError, match=r'lacks .* DRN-D-38'):
        drn2segext.convert(src, 'D', 38, log=quiet)
    # D-22 weights into D-54: shapes do not fit
    with pytest.raises(drn2segext.ConversionError,
                       match=r"shape mismatch for 'layer3.0.conv1.weight'|"
                       r"unknown key"):
        drn2segext.convert(src, 'D', 54, log=quiet)
    with pytest.raises(drn2segext.ConversionError,
                       match=r'--arch C given.*DRN-D-22'):
        drn2segext.convert(src, 'C', None, log=quiet)
    with pytest.raises(drn2segext.ConversionError,
                       match=r'unknown variant DRN-D-23.*DRN-D-22'):
        drn2segext.convert(src, 'D', 23, log=quiet)
    seg = {f'base.{k}': v for k, v in src.items()}
    with pytest.raises(drn2segext.ConversionError, match=r'DRNSeg'):
        drn2segext.convert(seg, log=quiet)


def test_cli_missing_file_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        drn2segext.main([str(tmp_path / 'nope.pth'), str(tmp_path / 'o.pth')])
    assert exc.value.code == 2
    assert 'checkpoint not found' in capsys.readouterr().err
