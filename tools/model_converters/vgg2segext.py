#!/usr/bin/env python
"""Convert an ImageNet VGG-16 checkpoint to segext's ``DilatedVGG`` names.

    python tools/model_converters/vgg2segext.py vgg16-397923af.pth \\
        checkpoints/vgg16_segext.pth

Then ``backbone=dict(type='DilatedVGG', init_cfg=dict(type='Pretrained',
checkpoint='checkpoints/vgg16_segext.pth'))`` (or ``pretrained=...``).

Input: torchvision's ``vgg16`` state dict, or a Caffe VGG-16 converted to
PyTorch with the Caffe layer names (``conv1_1.weight`` ... ``fc7.bias``; fc6
and fc7 either as ``Linear`` matrices or already as conv kernels, as in the
dilation authors' ``vgg_conv.caffemodel``).  ``{'state_dict': ...}`` and a
DataParallel ``module.`` prefix are accepted.  Names:

    torchvision                 Caffe            segext
    features.0,2                conv1_1,1_2      conv1_1, conv1_2
    features.5,7                conv2_1,2_2      conv2_1, conv2_2
    features.10,12,14           conv3_1..3_3     conv3_1 .. conv3_3
    features.17,19,21           conv4_1..4_3     conv4_1 .. conv4_3
    features.24,26,28           conv5_1..5_3     conv5_1 .. conv5_3
    classifier.0 (4096×25088)   fc6              fc6 (4096×512×7×7)
    classifier.3 (4096×4096)    fc7              fc7 (4096×4096×1×1)
    classifier.6 (1000×4096)    fc8              dropped (ImageNet classes)

The fc matrices become conv kernels by a reshape: torchvision flattens the
7×7×512 pool5 map channel-major (C, H, W), which is exactly the
(out, C, kh, kw) layout of a conv weight.  Every tensor is mapped or dropped
with a message; an unknown key (including any BatchNorm tensor: the paper's
VGG has none), a missing tensor or a shape that does not fit VGG-16 is an
error naming it.

Caffe weights expect BGR input in 0..255 minus the mean, torchvision's
RGB normalised by mean and std: pair a Caffe-origin checkpoint with
``data_preprocessor=dict(mean=[103.53, 116.28, 123.675], std=[1, 1, 1],
bgr_to_rgb=False)``.
"""
import argparse
import os.path as osp
from collections import OrderedDict
from math import prod

import torch

from segext.utils.model_conversion import (ConversionError,  # noqa: F401
                                           converter_errors_to_exit,
                                           read_checkpoint, save_converted,
                                           unwrap_state_dict)

__all__ = ['ConversionError', 'SOURCE_NAMES', 'convert', 'fc_to_conv',
           'main']

# segext layer <- torchvision ``features`` index (VGG-16, configuration D)
_CONVS = ('conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1', 'conv3_2',
          'conv3_3', 'conv4_1', 'conv4_2', 'conv4_3', 'conv5_1', 'conv5_2',
          'conv5_3')
_FEATURE_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
#: source layer name -> segext layer name (None: dropped)
SOURCE_NAMES = {
    **{f'features.{i}': name for i, name in zip(_FEATURE_INDICES, _CONVS)},
    'classifier.0': 'fc6', 'classifier.3': 'fc7', 'classifier.6': None,
    **{name: name for name in _CONVS},
    'fc6': 'fc6', 'fc7': 'fc7', 'fc8': None,
}


def unwrap(checkpoint) -> 'OrderedDict[str, torch.Tensor]':
    """The state dict of a checkpoint, without a DataParallel prefix."""
    return unwrap_state_dict(checkpoint)


def fc_to_conv(weight: torch.Tensor, target_shape) -> torch.Tensor:
    """A ``Linear`` weight (out, C·k·k) as a conv weight (out, C, k, k).

    Conv weights (4-D) pass through.  Raises :class:`ConversionError` if the
    sizes cannot match.
    """
    target_shape = tuple(target_shape)
    if weight.dim() == 2 and weight.shape[0] == target_shape[0] and \
            weight.shape[1] == prod(target_shape[1:]):
        return weight.reshape(target_shape)
    return weight


def _target_state():
    from segext.models.backbones.dilated_vgg import DilatedVGG
    with torch.device('meta'):  # shapes only, no memory
        return DilatedVGG(depth=16).state_dict()


def convert(state, log=print) -> 'OrderedDict[str, torch.Tensor]':
    """VGG-16 state dict -> ``DilatedVGG(depth=16)`` state dict.

    Raises :class:`ConversionError` naming the key at fault.
    """
    state = unwrap(state)
    bn = [k for k in state if k.endswith(('running_mean', 'running_var'))]
    if bn:
        raise ConversionError(
            f'unknown key {bn[0]!r}: a BatchNorm tensor, so this looks like '
            'VGG-16-BN; the paper\'s front-end is VGG-16 without BN')
    target = _target_state()
    out = OrderedDict()
    for key, value in state.items():
        layer, _, leaf = key.rpartition('.')
        if layer not in SOURCE_NAMES or leaf not in ('weight', 'bias'):
            raise ConversionError(
                f'unknown key {key!r}; expected torchvision '
                '(features.N, classifier.0/3/6) or Caffe (conv1_1 .. '
                'conv5_3, fc6, fc7, fc8) VGG-16 names')
        new_layer = SOURCE_NAMES[layer]
        if new_layer is None:
            log(f'dropped {key} {tuple(value.shape)}: the ImageNet '
                'classifier (fc8)')
            continue
        new_key = f'{new_layer}.{leaf}'
        if new_key in out:
            raise ConversionError(
                f'{key!r} maps to {new_key!r}, which another key already '
                'filled (torchvision and Caffe names mixed?)')
        expected = tuple(target[new_key].shape)
        is_fc_weight = new_layer in ('fc6', 'fc7') and leaf == 'weight'
        if is_fc_weight:
            value = fc_to_conv(value, expected)
        if tuple(value.shape) != expected:
            linear = (expected[0], prod(expected[1:]))
            also = f' (or its Linear form {linear})' if is_fc_weight else ''
            raise ConversionError(
                f'shape mismatch for {key!r} -> {new_key!r}: checkpoint '
                f'{tuple(state[key].shape)}, DilatedVGG (VGG-16) expects '
                f'{expected}{also}')
        out[new_key] = value
    missing = [k for k in target if k not in out]
    if missing:
        raise ConversionError(
            f'the checkpoint lacks {len(missing)} tensor(s) of VGG-16, e.g. '
            f'{missing[:5]}')
    # target order, so that the file reads like the model
    return OrderedDict((k, out[k]) for k in target)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert an ImageNet VGG-16 checkpoint (torchvision or "
        "Caffe names) to segext's DilatedVGG backbone names.")
    parser.add_argument('src', help='the VGG-16 checkpoint (.pth)')
    parser.add_argument('dst', help='output checkpoint for segext')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with converter_errors_to_exit('vgg2segext', args.src):
        ckpt = read_checkpoint(args.src)
        state = convert(ckpt)
    save_converted(state, args.dst, source=osp.basename(args.src),
                   converter='tools/model_converters/vgg2segext.py')
    n = sum(v.numel() for v in state.values())
    print(f'saved DilatedVGG (VGG-16): {len(state)} tensors, {n:,} '
          f'parameters -> {args.dst}')


if __name__ == '__main__':
    main()
