"""SegNetHead: the mirrored max-unpooling decoder, run inside mmseg's
EncoderDecoder on SegNetVGG's output."""
import pytest
import torch
import torch.nn as nn
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from segext.models.backbones import SegNetVGG
from segext.models.decode_heads import SegNetHead
from segext.models.layers import max_pool2d_compact

TINY = (4, 4, 8, 8, 8)

pytestmark = pytest.mark.usefixtures('one_thread')


def segmentor(stage_channels=TINY, num_classes=5, compact=True, **kwargs):
    init_default_scope('mmseg')
    return MODELS.build(ConfigDict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[0.] * 3,
                               std=[1.] * 3, seg_pad_val=255),
        backbone=dict(type='SegNetVGG', stage_channels=stage_channels,
                      compact_indices=compact),
        decode_head=dict(type='SegNetHead', stage_channels=stage_channels,
                         num_classes=num_classes),
        train_cfg=dict(), test_cfg=dict(mode='whole'), **kwargs))


def test_decoder_mirrors_the_encoder_as_in_the_paper():
    with torch.device('meta'):
        head = SegNetHead(num_classes=11)
    widths = [[(m.in_channels, m.out_channels) for m in stage.modules()
               if isinstance(m, nn.Conv2d)] for stage in head.stages]
    assert widths == [
        [(512, 512), (512, 512), (512, 512)],   # decoder stage 5
        [(512, 512), (512, 512), (512, 256)],   # 4
        [(256, 256), (256, 256), (256, 128)],   # 3
        [(128, 128), (128, 64)],                # 2
        [(64, 64)],                             # 1 (then conv_seg)
    ]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in head.modules()) == 12
    seg = head.conv_seg  # conv1_1_D: 3x3, 64 -> K, bias, no BN/ReLU
    assert (seg.in_channels, seg.out_channels, seg.kernel_size) == (
        64, 11, (3, 3)) and seg.bias is not None
    assert head.dropout is None and (head.in_channels, head.channels) == (
        512, 64)
    # no learned upsampling anywhere in SegNet
    with torch.device('meta'):
        model = segmentor(stage_channels=(64, 128, 256, 512, 512),
                          num_classes=11)
    assert not any(isinstance(m, (nn.ConvTranspose2d, nn.Upsample))
                   for m in model.modules())
    # the paper reports 29.5M trainable parameters
    n = sum(p.numel() for p in model.parameters())
    assert n == 29_441_419


def test_full_resolution_logits_through_encoder_decoder_without_interp(
        monkeypatch):
    model = segmentor().eval()
    x = torch.randn(2, 3, 45, 61)  # odd: every ceil-mode border case

    def no_interpolation(*args, **kwargs):
        raise AssertionError('SegNet must not interpolate')

    monkeypatch.setattr(torch.nn.functional, 'interpolate', no_interpolation)
    with torch.no_grad():
        logits = model(x, mode='tensor')
        feats = model.extract_feat(x)  # what EncoderDecoder hands the head
    assert logits.shape == (2, 5, 45, 61)
    assert len(feats.pool_indices) == 5 and feats[-1].shape == (2, 8, 2, 2)


def test_each_stage_unpools_sparsely_to_the_recorded_positions():
    model = segmentor().eval()
    calls = []
    model.decode_head.unpool.register_forward_hook(
        lambda module, args, out: calls.append((args, out)))
    with torch.no_grad():
        model(torch.randn(1, 3, 45, 61), mode='tensor')
    assert [tuple(out.shape[-2:]) for _, out in calls] == [
        (3, 4), (6, 8), (12, 16), (23, 31), (45, 61)]
    for (x, indices), out in calls:
        assert int((out != 0).sum()) <= x.numel()  # zeros elsewhere
        at_source = out.flatten(2).gather(
            2, indices.flat_indices().flatten(2))
        assert torch.equal(at_source, x.flatten(2))


def test_train_step_loss_backward_and_predict():
    torch.manual_seed(0)
    # an mmseg auxiliary head with in_index=-1 reads the deepest feature
    model = segmentor(auxiliary_head=dict(
        type='FCNHead', in_channels=8, channels=4, num_convs=1, in_index=-1,
        num_classes=5, concat_input=False)).train()
    x = torch.randn(2, 3, 32, 48)
    samples = []
    for _ in range(2):
        s = SegDataSample()
        label = torch.randint(0, 5, (1, 32, 48))
        label[:, :4] = 255
        s.gt_sem_seg = PixelData(data=label)
        s.set_metainfo(dict(img_shape=(32, 48), ori_shape=(32, 48),
                            pad_shape=(32, 48)))
        samples.append(s)
    losses = model(x, samples, mode='loss')
    assert torch.isfinite(losses['decode.loss_ce'])
    assert torch.isfinite(losses['aux.loss_ce'])
    (losses['decode.loss_ce'] + losses['aux.loss_ce']).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        preds = model(x, samples, mode='predict')
    assert preds[0].pred_sem_seg.data.shape == (1, 32, 48)


def test_compact_and_int64_indices_give_identical_logits():
    torch.manual_seed(0)
    a = segmentor(compact=True).eval()
    b = segmentor(compact=False).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        assert torch.equal(a(x, mode='tensor'), b(x, mode='tensor'))


def test_small_decoder_gradcheck():
    """float64 gradcheck of a whole (narrow) decoder w.r.t. its input."""
    torch.manual_seed(0)
    widths = (2, 2, 2, 2, 3)
    encoder = SegNetVGG(stage_channels=widths).double().eval()
    head = SegNetHead(stage_channels=widths, num_classes=2).double().eval()
    with torch.no_grad():
        out = encoder(torch.randn(1, 3, 11, 13, dtype=torch.float64))
    feature = out.feature.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda f: head((out.pool_indices, f)), (feature, ), fast_mode=True)


@pytest.mark.parametrize('kwargs, match', [
    (dict(in_channels=256), r'in_channels=256.*expected 512'),
    (dict(channels=32), r'channels=32.*expected 64'),
    (dict(num_convs=(2, 2, 3)), r'num_convs=\(2, 2, 3\)'),
    (dict(num_convs=(1, 2, 3, 3, 3)), r'num_convs\[0\]=1'),
    (dict(seg_kernel_size=2), 'seg_kernel_size=2'),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match), torch.device('meta'):
        SegNetHead(num_classes=3, **kwargs)


def test_wrong_inputs_are_explained():
    head = SegNetHead(stage_channels=TINY, num_classes=3)
    with pytest.raises(TypeError, match=r'SegNetVGG output.*got tuple of '
                       r'\(Tensor, Tensor\)'):
        head((torch.randn(1, 8, 2, 2), torch.randn(1, 8, 2, 2)))
    x = torch.randn(1, 8, 4, 4)
    _, indices = max_pool2d_compact(x)
    with pytest.raises(ValueError, match='indices of 2 encoder stages'):
        head(((indices, indices), torch.randn(1, 8, 2, 2)))
    with pytest.raises(ValueError, match=r'\(1, 4, 2, 2\).*in_channels=8'):
        head(((indices, ) * 5, torch.randn(1, 4, 2, 2)))
