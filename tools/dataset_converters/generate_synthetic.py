"""Generate segext's synthetic dense-prediction dataset.

Examples::

    # COCO panoptic layout with the 6 synthetic classes (data/synthetic)
    python tools/dataset_converters/generate_synthetic.py data/synthetic
    # real COCO categories, loadable by stock mmdet COCO panoptic configs
    python tools/dataset_converters/generate_synthetic.py data/coco \
        --layout coco-categories
    python tools/dataset_converters/generate_synthetic.py data/cityscapes \
        --layout cityscapes
    python tools/dataset_converters/generate_synthetic.py data --layout voc
    python tools/dataset_converters/generate_synthetic.py data --layout camvid

See docs/synthetic_data.md for the scenes and the exact output paths.
"""
import argparse

from segext.datasets.synthetic import LAYOUTS, generate
from segext.utils.cli import user_errors_to_exit


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate a synthetic dataset in a public dataset layout')
    parser.add_argument(
        'out_dir', nargs='?', default=None,
        help='output root (default per layout: ' + ', '.join(
            f'{k}: {v.default_out_dir}' for k, v in LAYOUTS.items()) + ')')
    parser.add_argument('--layout', default='coco', choices=sorted(LAYOUTS),
                        help='dataset layout to write (default: coco)')
    parser.add_argument('--num-train', type=int, default=64,
                        help='number of training images (default: 64)')
    parser.add_argument('--num-val', type=int, default=16,
                        help='number of val (and camvid test) images '
                        '(default: 16)')
    parser.add_argument('--size', type=int, nargs=2, default=[192, 256],
                        metavar=('H', 'W'),
                        help='image height and width (default: 192 256)')
    parser.add_argument('--seed', type=int, default=0,
                        help='random seed (default: 0)')
    parser.add_argument('--overwrite', action='store_true',
                        help="replace the layout's outputs if OUT_DIR "
                        'already has them')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_dir = args.out_dir or LAYOUTS[args.layout].default_out_dir
    # bad arguments / out dir: one-line message and exit status 2
    with user_errors_to_exit('generate_synthetic.py', out_dir,
                             only=(ValueError, OSError)):
        info = generate(out_dir, layout=args.layout,
                        num_train=args.num_train, num_val=args.num_val,
                        size=tuple(args.size), seed=args.seed,
                        overwrite=args.overwrite)
    for split, stats in info['splits'].items():
        print(f"{info['layout']} {split}: {stats['num_images']} images, "
              f"{stats['num_things']} things, {stats['num_crowd']} crowd "
              f"regions, {stats['num_empty']} without things -> {out_dir}")


if __name__ == '__main__':
    main()
