#!/usr/bin/env python
"""Parameter counts of every DRN variant, next to the paper's.

    python tools/analysis_tools/count_drn_params.py

Models are built on the ``meta`` device (shapes only: no memory, ~2 s).
"backbone" is segext's ``DRN`` (no classifier); "+ fc" adds the 1000-class
1x1 fc with bias that the authors' ImageNet models (and the paper's Table 1
counts) have: ``out_channels * 1000 + 1000``.
"""
import argparse
import sys

import torch

from segext.models.backbones.drn import DRN  # noqa: E402

# The authors' exact totals with the fc (DRN-A: ResNet-18/34/50; B-26 = C-26;
# C-58 without its unused level-7 downsample, 41,591,608 with it).
REFERENCE = {
    ('A', 18): 11_689_512, ('A', 34): 21_797_672, ('A', 50): 25_557_032,
    ('B', 26): 21_126_584, ('C', 26): 21_126_584, ('C', 42): 31_234_744,
    ('C', 58): 40_542_008, ('D', 22): 16_393_752, ('D', 24): 21_114_392,
    ('D', 38): 26_501_912, ('D', 40): 31_222_552, ('D', 54): 35_809_176,
    ('D', 56): 40_529_816, ('D', 105): 54_801_304, ('D', 107): 59_521_944,
}


def count(arch: str, depth: int) -> tuple:
    with torch.device('meta'):
        model = DRN(arch=arch, depth=depth)
    backbone = sum(p.numel() for p in model.parameters())
    c = model.level_channels[-1]
    return backbone, backbone + c * 1000 + 1000


def main(argv=None):
    argparse.ArgumentParser(description=__doc__.split('\n')[0]).parse_args(
        argv)
    print('| model | backbone | + fc (1000 classes) | reference | equal |')
    print('|---|---:|---:|---:|:---:|')
    ok = True
    for arch, depths in DRN.arch_settings.items():
        for depth in depths:
            backbone, total = count(arch, depth)
            ref = REFERENCE[(arch, depth)]
            ok &= total == ref
            print(f'| DRN-{arch}-{depth} | {backbone:,} | {total:,} | '
                  f'{ref:,} | {"yes" if total == ref else "NO"} |')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
