"""tools/model_converters/vgg2segext.py on synthetic VGG-16 state dicts.

Full-size VGG-16 tensors are created on the meta device (shapes only, no
memory); the tensor routing is checked by identity, the fc reshape on small
real tensors."""
import importlib.util
import os.path as osp
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from segext.models.backbones import DilatedVGG

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_tool():
    path = osp.join(ROOT, 'tools', 'model_converters', 'vgg2segext.py')
    spec = importlib.util.spec_from_file_location('vgg2segext', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()

CFG_D = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M',
         512, 512, 512, 'M']


def torchvision_vgg16(device='meta'):
    """torchvision ``vgg16().state_dict()`` keys and shapes."""
    sd = OrderedDict()
    idx, c_in = 0, 3
    for v in CFG_D:
        if v == 'M':
            idx += 1
            continue
        sd[f'features.{idx}.weight'] = torch.empty(v, c_in, 3, 3,
                                                   device=device)
        sd[f'features.{idx}.bias'] = torch.empty(v, device=device)
        idx += 2  # conv, ReLU
        c_in = v
    for i, (o, n) in zip((0, 3, 6), ((4096, 25088), (4096, 4096),
                                     (1000, 4096))):
        sd[f'classifier.{i}.weight'] = torch.empty(o, n, device=device)
        sd[f'classifier.{i}.bias'] = torch.empty(o, device=device)
    return sd


def test_torchvision_names_convert_and_load():
    src = torchvision_vgg16()
    logs = []
    out = tool.convert(src, log=logs.append)
    with torch.device('meta'):
        model = DilatedVGG()
    assert list(out) == list(model.state_dict())
    model.load_state_dict(out, strict=True, assign=True)
    # routing, by identity: features.N -> the paper's layer names
    assert out['conv1_1.weight'] is src['features.0.weight']
    assert out['conv2_1.bias'] is src['features.5.bias']
    assert out['conv4_1.weight'] is src['features.17.weight']
    assert out['conv5_3.weight'] is src['features.28.weight']
    assert out['fc6.weight'].shape == (4096, 512, 7, 7)
    assert out['fc7.weight'].shape == (4096, 4096, 1, 1)
    assert out['fc7.bias'] is src['classifier.3.bias']
    assert len(logs) == 2 and all('classifier.6' in m for m in logs)


def test_caffe_names_with_conv_fc_and_wrappers():
    # the same tensors under Caffe layer names, DataParallel-prefixed
    sd = OrderedDict()
    for key, value in torchvision_vgg16().items():
        layer, _, leaf = key.rpartition('.')
        caffe = tool.SOURCE_NAMES[layer] or 'fc8'
        sd[f'module.{caffe}.{leaf}'] = value
    sd['module.fc6.weight'] = torch.empty(4096, 512, 7, 7, device='meta')
    out = tool.convert({'state_dict': sd}, log=lambda m: None)
    assert out['fc6.weight'] is sd['module.fc6.weight']  # already a conv
    assert out['conv3_2.weight'] is sd['module.conv3_2.weight']
    assert 'fc8.weight' not in out


def test_fc_to_conv_is_the_same_function():
    torch.manual_seed(0)
    fc = torch.nn.Linear(3 * 7 * 7, 5)
    x = torch.rand(2, 3, 7, 7)
    w = tool.fc_to_conv(fc.weight, (5, 3, 7, 7))
    torch.testing.assert_close(
        F.conv2d(x, w, fc.bias).flatten(1), fc(x.flatten(1)))


@pytest.mark.parametrize('edit, match', [
    (lambda sd: sd.__setitem__('features.3.weight', torch.empty(1)),
     "unknown key 'features.3.weight'"),
    (lambda sd: sd.__setitem__('features.1.running_mean', torch.empty(64)),
     'VGG-16-BN'),
    (lambda sd: sd.__setitem__('features.0.weight',
                               torch.empty(64, 3, 5, 5, device='meta')),
     r"'features.0.weight' -> 'conv1_1.weight'.*\(64, 3, 5, 5\)"),
    (lambda sd: sd.__setitem__('classifier.0.weight',
                               torch.empty(4096, 9216, device='meta')),
     r"'classifier.0.weight' -> 'fc6.weight'.*\(4096, 9216\)"),
    (lambda sd: sd.pop('features.28.bias'), "lacks 1 .*'conv5_3.bias'"),
    (lambda sd: sd.__setitem__('conv1_1.weight', sd['features.0.weight']),
     "'conv1_1.weight' maps to 'conv1_1.weight'"),
])
def test_errors_name_the_key(edit, match):
    sd = torchvision_vgg16()
    edit(sd)
    with pytest.raises(tool.ConversionError, match=match):
        tool.convert(sd, log=lambda m: None)


def test_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        tool.main([str(tmp_path / 'nope.pth'), str(tmp_path / 'out.pth')])
    assert exc.value.code == 2
    assert 'checkpoint not found' in capsys.readouterr().err
    bad = tmp_path / 'bad.pth'
    torch.save({'features.0.weight': torch.zeros(64, 3, 3, 3),
                'head.weight': torch.zeros(2)}, bad)
    with pytest.raises(SystemExit) as exc:
        tool.main([str(bad), str(tmp_path / 'out.pth')])
    assert exc.value.code == 2
    assert "unknown key 'head.weight'" in capsys.readouterr().err
    assert not (tmp_path / 'out.pth').exists()
