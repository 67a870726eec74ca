"""SegNetVGG: the SegNet encoder (VGG-16-BN, 5 compact max-poolings) and the
output contract that mmseg's EncoderDecoder passes to SegNetHead."""
import pytest
import torch
import torch.nn as nn

from segext.models.backbones import SegNetEncoderOutput, SegNetVGG
from segext.models.layers import PoolIndices

VGG16_CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256),
               (256, 256), (256, 256), (256, 512), (512, 512), (512, 512),
               (512, 512), (512, 512), (512, 512)]

pytestmark = pytest.mark.usefixtures('one_thread')


def test_vgg16_bn_encoder_structure():
    with torch.device('meta'):
        model = SegNetVGG()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == VGG16_CONVS
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1)
               and c.bias is None for c in convs)  # BN follows every conv
    assert [len(s) for s in model.stages] == [2, 2, 3, 3, 3]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 13
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert all(p.ceil_mode and p.compact for p in model.pools)
    n = sum(p.numel() for p in model.parameters())
    assert n == sum(9 * i * o + 2 * o for i, o in VGG16_CONVS) == 14_718_912


def test_output_contract_and_caffe_ceil_sizes_at_360x480():
    # narrow stages: the sizes, not the widths, are under test here
    model = SegNetVGG(stage_channels=(4, 4, 4, 4, 8)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 360, 480))
    assert isinstance(out, SegNetEncoderOutput) and isinstance(out, tuple)
    assert out[-1] is out.feature and out[0] is out.pool_indices
    assert out.feature.shape == (1, 8, 12, 15)
    assert all(isinstance(i, PoolIndices) and i.compact
               for i in out.pool_indices)
    assert [i.pre_pool_size for i in out.pool_indices] == [
        (360, 480), (180, 240), (90, 120), (45, 60), (23, 30)]
    assert [tuple(i.pooled_shape[-2:]) for i in out.pool_indices] == [
        (180, 240), (90, 120), (45, 60), (23, 30), (12, 15)]
    floor = SegNetVGG(stage_channels=(4, ) * 5, ceil_mode=False).eval()
    with torch.no_grad():
        out = floor(torch.randn(1, 3, 360, 480))
    assert out.pool_indices[3].pre_pool_size == (45, 60)
    assert tuple(out.pool_indices[3].pooled_shape[-2:]) == (22, 30)


def test_int64_flag_same_network_same_maxima():
    torch.manual_seed(0)
    compact = SegNetVGG(stage_channels=(4, 4, 8, 8, 8)).eval()
    int64 = SegNetVGG(stage_channels=(4, 4, 8, 8, 8),
                      compact_indices=False).eval()
    int64.load_state_dict(compact.state_dict())
    x = torch.randn(2, 3, 45, 61)
    with torch.no_grad():
        a, b = compact(x), int64(x)
    assert torch.equal(a.feature, b.feature)
    for ia, ib in zip(a.pool_indices, b.pool_indices):
        assert ia.compact and not ib.compact
        assert ib.data.dtype == torch.int64
        assert torch.equal(ia.flat_indices(), ib.data)
        assert ia.nbytes * 32 <= ib.nbytes + 32


def test_frozen_stages_and_norm_eval():
    model = SegNetVGG(stage_channels=(4, ) * 5, frozen_stages=1,
                      norm_eval=True)
    model.train()
    for s, stage in enumerate(model.stages):
        assert all(p.requires_grad == (s > 1) for p in stage.parameters())
    assert not any(m.training for m in model.modules()
                   if isinstance(m, nn.BatchNorm2d))
    x = torch.randn(1, 3, 32, 32)
    model(x).feature.sum().backward()
    assert model.stages[0][0].conv.weight.grad is None
    assert model.stages[2][0].conv.weight.grad is not None


@pytest.mark.parametrize('kwargs, match', [
    (dict(depth=15), r'depth=15.*\[11, 13, 16, 19\]'),
    (dict(frozen_stages=5), r'frozen_stages.*\[-1, 4\].*5'),
    (dict(stage_channels=(64, 128)), r'stage_channels=\(64, 128\)'),
    (dict(pretrained='a.pth', init_cfg=dict(type='Kaiming')),
     'pretrained or init_cfg'),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SegNetVGG(**kwargs)


def test_registered_in_mmseg():
    from mmseg.registry import MODELS
    assert MODELS.get('SegNetVGG') is SegNetVGG
