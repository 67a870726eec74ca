"""DRN backbone: every variant's parameter count, the paper's level
structure, shapes, gradients, and the mmseg/mmdet backbone options."""
import pytest
import torch
from mmcv.cnn import ConvModule
from mmdet.registry import MODELS as MMDET_MODELS
from mmseg.models.backbones.resnet import Bottleneck
from mmseg.registry import MODELS as MMSEG_MODELS
from torch import nn

from segext.models.backbones import DRN, DRNBasicBlock

# The authors' exact totals, 1000-class 1x1 fc (with bias) included
# (docs/drn.md; C-58 without its unused level-7 downsample).
REFERENCE_PARAMS = {
    ('A', 18): 11_689_512, ('A', 34): 21_797_672, ('A', 50): 25_557_032,
    ('B', 26): 21_126_584,  # = C-26: C-26's level 7 has no downsample
    ('C', 26): 21_126_584, ('C', 42): 31_234_744, ('C', 58): 40_542_008,
    ('D', 22): 16_393_752, ('D', 24): 21_114_392, ('D', 38): 26_501_912,
    ('D', 40): 31_222_552, ('D', 54): 35_809_176, ('D', 56): 40_529_816,
    ('D', 105): 54_801_304, ('D', 107): 59_521_944,
}

pytestmark = pytest.mark.usefixtures('one_thread')


def params_with_fc(model: DRN) -> int:
    c = model.level_channels[-1]
    return sum(p.numel() for p in model.parameters()) + c * 1000 + 1000


def test_every_variant_is_tested():
    assert sorted(REFERENCE_PARAMS) == sorted(
        (a, d) for a, ds in DRN.arch_settings.items() for d in ds)


@pytest.mark.parametrize('arch,depth', sorted(REFERENCE_PARAMS))
def test_param_count_equals_reference(arch, depth):
    with torch.device('meta'):  # shapes only
        model = DRN(arch=arch, depth=depth)
    assert params_with_fc(model) == REFERENCE_PARAMS[(arch, depth)]


def test_param_count_real_model_d22():
    model = DRN(arch='D', depth=22)
    assert params_with_fc(model) == REFERENCE_PARAMS[('D', 22)]


def _dilations(level):
    return [m.dilation[0] for m in level.modules() if isinstance(
        m, nn.Conv2d) and m.kernel_size == (3, 3)]


def _strides(level):
    return [m.stride[0] for m in level.modules() if isinstance(
        m, nn.Conv2d) and m.kernel_size == (3, 3)]


@pytest.mark.parametrize('arch,depth', [('C', 42), ('D', 22), ('D', 105)])
def test_levels_follow_the_paper(arch, depth):
    with torch.device('meta'):
        model = DRN(arch=arch, depth=depth)
    # stem: 7x7 conv 3->16, stride 1, no max-pool
    assert model.stem.conv.kernel_size == (7, 7)
    assert model.stem.conv.stride == (1, 1)
    assert model.stem.conv.out_channels == 16
    assert isinstance(model.maxpool, nn.Identity)
    # every 3x3 conv of a level has the level's dilation -- the first block
    # of levels 5 and 6 included -- and only the first conv has the stride
    expected = dict(zip(range(1, 9), (1, 1, 1, 1, 2, 4, 2, 1)))
    strides = dict(zip(range(1, 9), (1, 2, 2, 2, 1, 1, 1, 1)))
    for i in range(1, 9):
        level = getattr(model, f'layer{i}')
        assert set(_dilations(level)) == {expected[i]}, i
        assert _strides(level)[0] == strides[i]
        assert set(_strides(level)[1:]) <= {1}
        assert len(level) == DRN.arch_settings[arch][depth][1][i - 1]
    block = DRN.arch_settings[arch][depth][0]
    for i in (3, 4, 5, 6):
        assert all(isinstance(b, block) for b in getattr(model, f'layer{i}'))
    for i in (1, 2, 7, 8):
        level = getattr(model, f'layer{i}')
        if arch == 'D':
            assert all(isinstance(b, ConvModule) for b in level)
        else:
            assert all(isinstance(b, DRNBasicBlock) for b in level)
            assert all(b.residual == (i < 7) for b in level)
    assert model.level_channels == (
        (16, 32, 64, 128, 256, 512, 512, 512) if block is DRNBasicBlock else
        (16, 32, 256, 512, 1024, 2048, 512, 512))


def test_c58_level7_has_no_downsample_and_b_keeps_residuals():
    with torch.device('meta'):
        c58 = DRN(arch='C', depth=58)
        b26 = DRN(arch='B', depth=26)
    assert c58.layer7[0].downsample is None and not c58.layer7[0].residual
    assert c58.layer7[0].conv1.in_channels == 2048
    assert all(b.residual for b in (*b26.layer7, *b26.layer8))


@pytest.mark.parametrize('depth', [18, 50])
def test_drn_a_first_dilated_block_keeps_previous_dilation(depth):
    with torch.device('meta'):
        model = DRN(arch='A', depth=depth)
    assert model.stem.conv.stride == (2, 2)
    assert isinstance(model.maxpool, nn.MaxPool2d)
    # stage 4 (layer3): 1 then 2; stage 5 (layer4): 2 then 4 (the paper)
    assert _dilations(model.layer3[0]) == [1] * len(_dilations(
        model.layer3[0]))
    assert set(_dilations(model.layer3[1])) == {2}
    assert set(_dilations(model.layer4[0])) == {2}
    assert set(_dilations(model.layer4[1])) == {4}
    assert [_strides(getattr(model, f'layer{i}'))[0]
            for i in range(1, 5)] == [1, 2, 1, 1]


def test_forward_shapes_d22_every_level():
    model = DRN(arch='D', depth=22).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 32, 48))
    assert len(outs) == 8
    for out, s, c in zip(outs, (1, 2, 4, 8, 8, 8, 8, 8),
                         (16, 32, 64, 128, 256, 512, 512, 512)):
        assert out.shape == (1, c, 32 // s, 48 // s)


def test_forward_backward_c26_odd_size_and_every_param_has_grad():
    model = DRN(arch='C', depth=26, out_indices=(2, 7))
    model.train()
    x = torch.rand(2, 3, 35, 41)
    outs = model(x)
    # output stride 8, rounded up like any stride-2 conv with padding
    assert [o.shape[-2:] for o in outs] == [(9, 11), (5, 6)]
    sum(o.mean() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []


def test_drn_a18_forward_shapes():
    model = DRN(arch='A', depth=18).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [
        (1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 8, 8), (1, 512, 8, 8)]


def test_with_cp_same_outputs_and_grads():
    ref = DRN(arch='D', depth=22, out_indices=(3, 7)).train()
    ckpt = DRN(arch='D', depth=22, out_indices=(3, 7), with_cp=True).train()
    ckpt.load_state_dict(ref.state_dict())
    x = torch.rand(2, 3, 16, 16)
    outs_ref, outs_cp = ref(x), ckpt(x)
    for o_ref, o_cp in zip(outs_ref, outs_cp):
        torch.testing.assert_close(o_cp, o_ref)
    sum(o.sum() for o in outs_ref).backward()
    sum(o.sum() for o in outs_cp).backward()
    for (name, p_ref), p_cp in zip(ref.named_parameters(),
                                   ckpt.parameters()):
        torch.testing.assert_close(p_cp.grad, p_ref.grad, msg=name)


def test_frozen_stages_and_norm_eval():
    model = DRN(arch='C', depth=26, frozen_stages=2, norm_eval=True)
    model.train()
    for m in (model.stem, model.layer1, model.layer2):
        assert not m.training
        assert all(not p.requires_grad for p in m.parameters())
    assert all(p.requires_grad for p in model.layer3.parameters())
    assert model.layer3.training
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)


def test_norm_cfg_gn_and_syncbn():
    gn = DRN(arch='D', depth=22, out_indices=(7, ),
             norm_cfg=dict(type='GN', num_groups=8))
    assert any(isinstance(m, nn.GroupNorm) for m in gn.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gn.modules())
    gn.eval()(torch.rand(1, 3, 16, 16))
    with torch.device('meta'):
        sync = DRN(arch='C', depth=58, norm_cfg=dict(type='SyncBN'))
    assert isinstance(sync.layer3[0].bn2, nn.SyncBatchNorm)


def test_registered_in_mmseg_and_mmdet():
    for registry in (MMSEG_MODELS, MMDET_MODELS):
        model = registry.build(
            dict(type='DRN', arch='D', depth=22, out_indices=(2, 7)))
        assert isinstance(model, DRN)


def test_bottleneck_is_mmseg_pytorch_style():
    with torch.device('meta'):
        model = DRN(arch='D', depth=54)
    blk = model.layer5[0]
    assert isinstance(blk, Bottleneck)
    # stride and dilation on the 3x3 (the authors' Bottleneck)
    assert blk.conv2.dilation == (2, 2) and blk.conv1.kernel_size == (1, 1)
    assert model.layer3[0].conv2.stride == (2, 2)


def test_default_init_is_the_authors():
    torch.manual_seed(0)
    model = DRN(arch='D', depth=22)
    model.init_weights()
    w = model.layer6[0].conv1.weight  # 512 out, 3x3: std sqrt(2 / (9*512))
    assert abs(w.std().item() / (2 / (9 * 512))**0.5 - 1) < 0.02
    assert torch.all(model.layer6[0].bn1.weight == 1)


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='E'), r"invalid arch='E'.*\['A', 'B', 'C', 'D'\]"),
    (dict(arch='C', depth=22),
     r'invalid depth=22 for arch=.C.*\[26, 42, 58\]'),
    (dict(arch='D', depth=22, out_indices=(8, )), r'out_indices=\(8,\)'),
    (dict(arch='A', depth=18, out_indices=(4, )), r'0\.\.3'),
    (dict(arch='D', depth=22, frozen_stages=9), r'frozen_stages=9'),
])
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises((KeyError, ValueError), match=match):
        DRN(**kwargs)
