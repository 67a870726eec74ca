"""tools/model_converters/vgg16bn2segnet.py on synthetic VGG-16-BN state
dicts: a torchvision-style VGG-16-BN with random weights and running
statistics is converted, loaded into SegNetVGG and must compute the same
pool5 features (conv biases folded into BN)."""
import importlib.util
import os.path as osp
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn

from segext.models.backbones import SegNetVGG

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
spec = importlib.util.spec_from_file_location(
    'vgg16bn2segnet',
    osp.join(ROOT, 'tools', 'model_converters', 'vgg16bn2segnet.py'))
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)

CFG_D = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M',
         512, 512, 512, 'M']

pytestmark = pytest.mark.usefixtures('one_thread')


def torchvision_vgg16_bn():
    """torchvision's ``vgg16_bn`` layout (features + classifier), random
    weights and BN statistics, ceil-mode pooling as SegNet's."""
    torch.manual_seed(0)
    layers, c_in = [], 3
    for v in CFG_D:
        if v == 'M':
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            continue
        bn = nn.BatchNorm2d(v)
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.uniform_(bn.bias, -0.5, 0.5)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.num_batches_tracked.fill_(1234)
        conv = nn.Conv2d(c_in, v, 3, padding=1)
        nn.init.uniform_(conv.bias, -0.5, 0.5)
        layers += [conv, bn, nn.ReLU(inplace=True)]
        c_in = v
    model = nn.Module()
    model.features = nn.Sequential(*layers)
    model.classifier = nn.Sequential(nn.Linear(8, 4), nn.ReLU(),
                                     nn.Linear(4, 10))  # small stand-in
    return model.eval()


def to_mmpretrain_names(state):
    """Rename to mmpretrain VGG (ConvModule) keys under ``backbone.``."""
    out, module, flat = OrderedDict(), 0, 0
    for v in CFG_D:
        if v == 'M':
            module, flat = module + 1, flat + 1
            continue
        for leaf in ('weight', 'bias'):
            out[f'backbone.features.{module}.conv.{leaf}'] = \
                state[f'features.{flat}.{leaf}']
        for leaf in tool.BN_LEAVES:
            out[f'backbone.features.{module}.bn.{leaf}'] = \
                state[f'features.{flat + 1}.{leaf}']
        module, flat = module + 1, flat + 3
    out['head.fc.weight'] = torch.zeros(10, 512)
    return out


@pytest.fixture(scope='module')
def reference():
    ref = torchvision_vgg16_bn()
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        expected = ref.features(x)
    return ref.state_dict(), x, expected


@pytest.mark.parametrize('names', ['torchvision', 'mmpretrain'])
def test_converted_encoder_computes_the_same_features(reference, names):
    state, x, expected = reference
    if names == 'mmpretrain':
        state = {'state_dict': to_mmpretrain_names(state), 'meta': {}}
    logs = []
    out = tool.convert(state, log=logs.append)
    model = SegNetVGG().eval()
    assert list(out) == list(model.state_dict())
    model.load_state_dict(out, strict=True)
    with torch.no_grad():
        feature = model(x).feature
    assert feature.shape == expected.shape == (1, 512, 2, 2)
    torch.testing.assert_close(feature, expected, rtol=1e-4, atol=1e-4)
    dropped = [m for m in logs if m.startswith('dropped')]
    assert dropped and all(('classifier.' in m or 'head.' in m)
                           for m in dropped)
    assert 'folded 13 conv biases' in logs[-1]
    assert int(out['stages.0.0.bn.num_batches_tracked']) == 1234


def test_errors_name_the_key(reference):
    state, _, _ = reference
    bad = OrderedDict(state)
    bad['features.99.weight'] = torch.zeros(1)
    with pytest.raises(tool.ConversionError, match="unknown key "
                       "'features.99.weight'"):
        tool.convert(bad, log=lambda m: None)
    bad = OrderedDict(state)
    bad['features.3.weight'] = torch.zeros(64, 64, 1, 1)
    with pytest.raises(tool.ConversionError, match=r"'features.3.weight' -> "
                       r"'stages.0.1.conv.weight'.*\(64, 64, 1, 1\).*"
                       r"\(64, 64, 3, 3\)"):
        tool.convert(bad, log=lambda m: None)
    bad = OrderedDict(state)
    del bad['features.41.running_var']
    with pytest.raises(tool.ConversionError, match="lacks "
                       "'features.41.running_var'"):
        tool.convert(bad, log=lambda m: None)
    plain = {k: v for k, v in state.items() if 'running' not in k}
    with pytest.raises(tool.ConversionError, match='not a VGG-BN'):
        tool.convert(plain, log=lambda m: None)


def test_cli_output_loads_through_init_cfg_pretrained(reference, tmp_path):
    state, x, expected = reference
    src, dst = tmp_path / 'vgg16_bn.pth', tmp_path / 'out' / 'segnet.pth'
    torch.save(state, src)
    tool.main([str(src), str(dst)])
    model = SegNetVGG(init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x).feature, expected, rtol=1e-4,
                                   atol=1e-4)
    with pytest.raises(SystemExit) as exc:
        tool.main([str(tmp_path / 'missing.pth'), str(dst)])
    assert exc.value.code == 2
