#!/usr/bin/env python
"""Convert an ImageNet VGG-16-BN checkpoint to segext's ``SegNetVGG`` names.

    python tools/model_converters/vgg16bn2segnet.py vgg16_bn-6c64b313.pth \\
        checkpoints/vgg16-bn_segnet-encoder.pth

then ``backbone=dict(type='SegNetVGG', init_cfg=dict(type='Pretrained',
checkpoint='checkpoints/vgg16-bn_segnet-encoder.pth'))``.  SegNet
initialises its encoder from VGG-16 (Badrinarayanan et al., TPAMI 2017,
Sec. 3).

Accepted source names (``{'state_dict': ...}`` wrappers and ``module.`` /
``backbone.`` prefixes are unwrapped)::

    flat (torchvision vgg16_bn, mmcv.cnn.VGG(with_bn=True))
        features.{i}.weight, .bias                      conv
        features.{i+1}.weight, .bias, .running_mean,    BN
                      .running_var, .num_batches_tracked
        i = 0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40 (VGG-16;
        conv, BN, ReLU per layer, one max-pool per stage)
    ConvModule (mmpretrain / mmcls VGG with norm_cfg=BN)
        features.{k}.conv.weight, .conv.bias, features.{k}.bn.*
        k = 0, 1, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15, 16 (VGG-16)

    -> stages.{s}.{j}.conv.weight, stages.{s}.{j}.bn.*   (conv{s+1}_{j+1})

``classifier.*`` (the ImageNet fully connected layers, absent from SegNet)
and ``head.*`` (mmpretrain's classification head) are dropped with a
message.  Any other key, a missing tensor or a shape that does not fit is an
error naming it.

Conv biases: ``SegNetVGG``'s convs have no bias (BN follows each of them),
so each VGG conv bias ``b`` is folded into the BN that follows it as
``running_mean - b``.  This is exact: in eval mode BN computes
``(conv(x) + b - mean) / std``; in training mode BN subtracts the batch
mean, which cancels any constant per-channel ``b``.
"""
import argparse
import os.path as osp
import re
import sys
from collections import OrderedDict
from typing import Callable, Dict, List, Tuple

import torch

from segext.utils.model_conversion import (ConversionError,  # noqa: F401
                                           read_checkpoint, save_converted,
                                           unwrap_state_dict)

__all__ = ['ConversionError', 'convert', 'layer_plan', 'main']

BN_LEAVES = ('weight', 'bias', 'running_mean', 'running_var',
             'num_batches_tracked')
DROPPED = {
    'classifier.': 'the ImageNet fully connected layers (SegNet has none)',
    'head.': "the classification head (mmpretrain's ClsHead)",
}


def layer_plan(depth: int = 16) -> List[Tuple[str, str, str]]:
    """Per conv, in forward order: (target prefix ``stages.s.j``, flat
    ``features`` index of the conv, ConvModule ``features`` index)."""
    from segext.models.backbones.segnet_vgg import SegNetVGG
    if depth not in SegNetVGG.arch_settings:
        raise ConversionError(
            f'depth={depth} is not a VGG depth; expected one of '
            f'{sorted(SegNetVGG.arch_settings)}')
    plan, flat, module = [], 0, 0
    for s, num_convs in enumerate(SegNetVGG.arch_settings[depth]):
        for j in range(num_convs):
            plan.append((f'stages.{s}.{j}', str(flat), str(module)))
            flat += 3    # Conv2d, BatchNorm2d, ReLU
            module += 1  # ConvModule
        flat += 1        # MaxPool2d
        module += 1
    return plan


def _source_names(state, depth) -> Dict[str, Tuple[str, str]]:
    """source key -> (target key, role); role 'bias' = conv bias to fold."""
    convmodule = any(re.match(r'features\.\d+\.(conv|bn)\.', k)
                     for k in state)
    names = {}
    for target, flat, module in layer_plan(depth):
        if convmodule:
            conv, bn = f'features.{module}.conv', f'features.{module}.bn'
        else:
            conv, bn = f'features.{flat}', f'features.{int(flat) + 1}'
        names[f'{conv}.weight'] = (f'{target}.conv.weight', 'conv')
        names[f'{conv}.bias'] = (f'{target}.bn.running_mean', 'bias')
        for leaf in BN_LEAVES:
            names[f'{bn}.{leaf}'] = (f'{target}.bn.{leaf}', 'bn')
    return names


def _target_shapes(depth) -> 'OrderedDict[str, torch.Size]':
    from segext.models.backbones.segnet_vgg import SegNetVGG
    with torch.device('meta'):  # shapes only, no memory
        state = SegNetVGG(depth=depth).state_dict()
    return OrderedDict((k, v.shape) for k, v in state.items())


def convert(checkpoint,
            depth: int = 16,
            log: Callable[[str], None] = print
            ) -> 'OrderedDict[str, torch.Tensor]':
    """ImageNet VGG-BN state dict -> ``SegNetVGG(depth)`` state dict.

    Raises :class:`ConversionError` naming the key at fault.
    """
    state = unwrap_state_dict(checkpoint, ('module.', 'backbone.'))
    if not any(k.endswith('running_mean') for k in state):
        raise ConversionError(
            'no BatchNorm running statistics found: this is not a VGG-BN '
            'checkpoint (SegNet\'s encoder has BN after every conv); for '
            'plain VGG-16 see tools/model_converters/vgg2segext.py')
    names = _source_names(state, depth)
    shapes = _target_shapes(depth)
    out, biases = OrderedDict(), {}
    for key, value in state.items():
        dropped = [why for p, why in DROPPED.items() if key.startswith(p)]
        if dropped:
            log(f'dropped {key} {tuple(value.shape)}: {dropped[0]}')
            continue
        if key not in names:
            raise ConversionError(
                f'unknown key {key!r}: expected VGG-{depth}-BN names, '
                'torchvision/mmcv (features.N.weight, ...) or mmpretrain '
                '(features.N.conv.weight, features.N.bn.weight, ...)')
        target, role = names[key]
        expected = shapes[target]
        if value.shape != expected:
            raise ConversionError(
                f'shape mismatch for {key!r} -> {target!r}: checkpoint '
                f'{tuple(value.shape)}, SegNetVGG(depth={depth}) expects '
                f'{tuple(expected)}')
        if role == 'bias':
            biases[target] = value
        else:
            out[target] = value.clone()
    for target, shape in shapes.items():
        if target in out:
            continue
        if target.endswith('num_batches_tracked'):
            out[target] = torch.zeros(shape, dtype=torch.long)
            continue
        source = [k for k, (t, r) in names.items() if t == target and
                  r != 'bias']
        raise ConversionError(
            f'the checkpoint lacks {source[0]!r} (-> {target!r}) of '
            f'VGG-{depth}-BN')
    for target, bias in biases.items():  # see the module docstring
        out[target] = out[target] - bias.to(out[target].dtype)
    log(f'folded {len(biases)} conv biases into BN running means')
    return OrderedDict((k, out[k]) for k in shapes)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert an ImageNet VGG-BN checkpoint (torchvision, '
        'mmcv or mmpretrain names) to segext SegNetVGG names')
    parser.add_argument('src', help='source checkpoint (.pth)')
    parser.add_argument('dst', help='output checkpoint (.pth)')
    parser.add_argument('--depth', type=int, default=16,
                        help='VGG depth (16 for SegNet)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    checkpoint = read_checkpoint(args.src)
    try:
        state = convert(checkpoint, depth=args.depth)
    except ConversionError as err:
        sys.exit(f'error: {args.src}: {err}')
    save_converted(state, args.dst, source=osp.basename(args.src),
                   converter='vgg16bn2segnet.py', depth=args.depth)
    print(f'saved {len(state)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
