#!/usr/bin/env python
"""Convert the DRN authors' ImageNet checkpoints to segext's ``DRN`` names.

    python tools/model_converters/drn2segext.py drn_d_22-4bd2f8ea.pth \\
        checkpoints/drn-d-22_segext.pth [--arch D --depth 22]

Then ``backbone=dict(type='DRN', arch='D', depth=22, init_cfg=dict(
type='Pretrained', checkpoint='checkpoints/drn-d-22_segext.pth'))``.

Input: the authors' ``drn.py`` state dicts (``drn_c_26-ddedf421.pth``,
``drn_d_22-4bd2f8ea.pth``, ...; also their ``classify.py`` checkpoints,
``{'state_dict': ...}`` with a DataParallel ``module.`` prefix) and, for
DRN-A, torchvision-layout ResNet-18/34/50 state dicts (the authors' DRN-A has
torchvision's names).  Their names and segext's:

    authors'                             segext
    layer0.0 / layer0.1   (D stem)       stem.conv / stem.bn
    conv1 / bn1           (A, C stem)    stem.conv / stem.bn
    layerI.{3k} / .{3k+1} (D levels      layerI.k.conv / layerI.k.bn
                           1, 2, 7, 8)
    layerI.J.<rest>       (blocks)       layerI.J.<rest>   (same names)
    layer7.0.downsample.* (C-58)         dropped: never used by its
                                         non-residual block
    fc.weight / fc.bias                  dropped: the ImageNet classifier

Every input tensor is mapped or dropped with a message; an unknown key, a
missing target tensor or a shape that does not fit the target variant is an
error naming it.  ``--arch``/``--depth`` are inferred from the keys when
omitted.  Old checkpoints (PyTorch < 0.4.1) have no BN
``num_batches_tracked``; those are filled with 0 (as PyTorch does).
"""
import argparse
import os.path as osp
import re
from collections import OrderedDict

import torch

from segext.utils.model_conversion import (ConversionError,  # noqa: F401
                                           converter_errors_to_exit,
                                           read_checkpoint, save_converted,
                                           unwrap_state_dict)

__all__ = ['ConversionError', 'convert', 'infer_variant', 'main']

# Levels the D variant builds of plain conv-BN-ReLU layers (authors'
# ``_make_conv_layers``: Conv2d, BatchNorm2d, ReLU per layer).
D_CONV_LEVELS = (1, 2, 7, 8)
DROPPED_CLASSIFIER = ('fc.weight', 'fc.bias')
# The stem's conv and BN: ``layer0`` Sequential (D) or ``conv1``/``bn1``.
STEM_NAMES = {
    'A': {'conv1': 'stem.conv', 'bn1': 'stem.bn'},
    'B': {'conv1': 'stem.conv', 'bn1': 'stem.bn'},
    'C': {'conv1': 'stem.conv', 'bn1': 'stem.bn'},
    'D': {'layer0.0': 'stem.conv', 'layer0.1': 'stem.bn'},
}


def _drn_class():
    from segext.models.backbones.drn import DRN
    return DRN


def unwrap(checkpoint) -> 'OrderedDict[str, torch.Tensor]':
    """The state dict of one of the authors' ImageNet checkpoints."""
    state = unwrap_state_dict(checkpoint)
    if any(k.startswith('base.') for k in state):
        raise ConversionError(
            "keys 'base.*' are the authors' segmentation model (DRNSeg); "
            'this converter takes their ImageNet (drn.py) checkpoints')
    return state


def _level_size(state, level: int, plain: bool) -> int:
    """Blocks (``layerI.J.conv1``) or plain conv layers of a level."""
    if plain:  # conv weights at Sequential indices 0, 3, 6, ...
        return sum(1 for k, v in state.items()
                   if re.fullmatch(rf'layer{level}\.\d+\.weight', k)
                   and v.dim() == 4)
    return len({k.split('.')[1] for k in state
                if re.fullmatch(rf'layer{level}\.\d+\.conv1\.weight', k)})


def infer_variant(state) -> tuple:
    """``(arch, depth)`` from the keys and stem shape of an authors' dict."""
    DRN = _drn_class()
    if 'layer0.0.weight' in state:
        arch = 'D'
    elif 'conv1.weight' in state:
        arch = {16: 'C', 64: 'A'}.get(state['conv1.weight'].shape[0])
        if arch is None:
            raise ConversionError(
                'cannot infer the arch: conv1.weight has shape '
                f'{tuple(state["conv1.weight"].shape)}, expected 16 (DRN-C) '
                'or 64 (DRN-A / ResNet) output channels; pass --arch/--depth')
    else:
        raise ConversionError(
            'cannot infer the arch: neither layer0.0.weight (DRN-D) nor '
            'conv1.weight (DRN-C, DRN-A) is in the checkpoint; pass '
            '--arch/--depth')
    bottleneck = any(k.startswith('layer3.0.conv3.') for k in state)
    counts = tuple(
        _level_size(state, level, arch == 'D' and level in D_CONV_LEVELS)
        for level in range(1, len(DRN.level_settings[arch]) + 1))
    for depth, (block, sizes) in DRN.arch_settings[arch].items():
        if (counts == tuple(sizes)
                and (block.expansion == 4) == bottleneck):
            return arch, depth
    raise ConversionError(
        f'cannot infer the depth: DRN-{arch} checkpoint with '
        f'{"Bottleneck" if bottleneck else "BasicBlock"}s and per-level '
        f'counts {counts} matches none of '
        f'{[f"DRN-{arch}-{d}" for d in DRN.arch_settings[arch]]}')


def _rename(key: str, arch: str):
    """The segext name of an authors' key, or None if it is not theirs."""
    prefix, leaf = key.rsplit('.', 1) if '.' in key else (key, '')
    if prefix in STEM_NAMES[arch]:
        return f'{STEM_NAMES[arch][prefix]}.{leaf}'
    m = re.fullmatch(r'layer(\d+)\.(\d+)\.(.+)', key)
    if not m:
        return None
    level, idx, rest = int(m.group(1)), int(m.group(2)), m.group(3)
    if arch == 'D' and level in D_CONV_LEVELS:
        if idx % 3 == 2 or '.' in rest:  # ReLU slots have no tensors
            return None
        return f'layer{level}.{idx // 3}.{("conv", "bn")[idx % 3]}.{rest}'
    return key


def convert(state, arch=None, depth=None, log=print):
    """Authors' state dict -> segext ``DRN(arch, depth)`` state dict.

    Returns ``(new_state, arch, depth)``.  Raises :class:`ConversionError`
    naming the key at fault.
    """
    DRN = _drn_class()
    state = unwrap(state)
    if arch is None or depth is None:
        inferred_arch, inferred_depth = infer_variant(state)
        # DRN-B has DRN-C's names (the authors released no DRN-B)
        if arch not in (None, inferred_arch) and (arch, inferred_arch) != (
                'B', 'C'):
            raise ConversionError(
                f'--arch {arch} given, but the checkpoint looks like '
                f'DRN-{inferred_arch}-{inferred_depth}')
        arch = arch or inferred_arch
        depth = depth or inferred_depth
        log(f'variant: DRN-{arch}-{depth} (inferred from the keys)')
    if arch not in DRN.arch_settings or depth not in DRN.arch_settings[arch]:
        raise ConversionError(
            f'unknown variant DRN-{arch}-{depth}; valid: {DRN.variants()}')
    with torch.device('meta'):  # shapes only, no memory
        target = DRN(arch=arch, depth=depth).state_dict()

    out = OrderedDict()
    for key, value in state.items():
        if key in DROPPED_CLASSIFIER:
            log(f'dropped {key} {tuple(value.shape)}: the ImageNet '
                'classifier (a backbone has none)')
            continue
        if (arch in 'BC' and key.startswith('layer7.0.downsample.')
                and not any(k.startswith('layer7.0.downsample.')
                            for k in target)):
            log(f'dropped {key} {tuple(value.shape)}: DRN-{arch}-{depth} '
                'level 7 has no residual, the authors\' downsample is unused')
            continue
        new_key = _rename(key, arch)
        if new_key is None or new_key not in target:
            raise ConversionError(
                f'unknown key {key!r} for DRN-{arch}-{depth}'
                + (f' (would be {new_key!r}, which the model does not have)'
                   if new_key else ''))
        if new_key in out:
            raise ConversionError(f'{key!r} maps to {new_key!r} twice')
        if tuple(value.shape) != tuple(target[new_key].shape):
            raise ConversionError(
                f'shape mismatch for {key!r} -> {new_key!r}: checkpoint '
                f'{tuple(value.shape)}, DRN-{arch}-{depth} expects '
                f'{tuple(target[new_key].shape)}')
        out[new_key] = value
    missing = [k for k in target if k not in out]
    filled = [k for k in missing if k.endswith('num_batches_tracked')]
    missing = [k for k in missing if k not in filled]
    if missing:
        raise ConversionError(
            f'the checkpoint lacks {len(missing)} tensor(s) of '
            f'DRN-{arch}-{depth}, e.g. {missing[:5]}')
    if filled:
        log(f'filled {len(filled)} BN num_batches_tracked with 0 (not in '
            'the checkpoint: saved by PyTorch < 0.4.1)')
        for k in filled:
            out[k] = torch.tensor(0, dtype=torch.long)
    # target order, so that the file reads like the model
    return OrderedDict((k, out[k]) for k in target), arch, depth


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert the DRN authors' ImageNet checkpoint to "
        "segext's DRN backbone names.")
    parser.add_argument('src', help="the authors' checkpoint (.pth)")
    parser.add_argument('dst', help='output checkpoint for segext')
    parser.add_argument('--arch', choices=['A', 'B', 'C', 'D'],
                        help='DRN arch (inferred from the keys if omitted)')
    parser.add_argument('--depth', type=int,
                        help='DRN depth (inferred from the keys if omitted)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with converter_errors_to_exit('drn2segext', args.src):
        ckpt = read_checkpoint(args.src)
        state, arch, depth = convert(ckpt, args.arch, args.depth)
    save_converted(state, args.dst, arch=arch, depth=depth,
                   source=osp.basename(args.src),
                   converter='tools/model_converters/drn2segext.py')
    n = sum(v.numel() for k, v in state.items()
            if not k.endswith(('running_mean', 'running_var',
                               'num_batches_tracked')))
    print(f'saved DRN-{arch}-{depth}: {len(state)} tensors, {n:,} '
          f'parameters -> {args.dst}')


if __name__ == '__main__':
    main()
