#!/usr/bin/env python
"""Run a segext (or any mmdet/mmseg) model on your images.

    python demo/image_demo.py IMG_OR_DIR CONFIG --weights CKPT \\
        --out-dir outputs/ [--device cpu] [--pred-score-thr 0.3]

The config's ``default_scope`` picks the library: mmdet configs (UPSNet,
Panoptic FPN, DRN-FPN) go through ``init_detector`` + ``inference_detector``,
mmseg configs (DRN, context module, SegNet) through ``init_model`` +
``inference_model``.  For every image ``<stem>`` it writes

    OUT_DIR/vis/<stem>.png     the overlay, drawn by the config's visualizer
                               (panoptic: stuff and instance masks with
                               outlines and labels; semantic: palette blend
                               with labels)
    OUT_DIR/preds/<stem>.png   the raw prediction -- panoptic: segment ids in
                               COCO panoptic RGB (id = R + 256 G + 256^2 B,
                               0 = VOID); semantic: the label map (uint8,
                               255 = no label)
    OUT_DIR/preds/<stem>.json  panoptic: ``segments_info`` (id, category_id
                               = label, name, isthing, area, bbox xywh);
                               semantic: the labels present and their areas

A checkpoint without ``meta['dataset_meta']`` still works: the class names
and palette then come from the config's test dataset (with a warning).  Bad
input (a missing image, config or checkpoint, a config that is not mmdet or
mmseg) is one line and exit code 2; ``SEGEXT_DEBUG=1`` shows the traceback.
"""
import argparse
import copy
import itertools
import json
import os
import os.path as osp
import pickle
import warnings


import numpy as np  # noqa: E402

import segext  # noqa: E402,F401
from segext.utils.cli import user_errors_to_exit  # noqa: E402
from segext.utils.config import (  # noqa: E402
    UserInputError, check_checkpoint, host_scope, load_config)

#: what loading a file that is not a checkpoint of this model raises
LOAD_ERRORS = (UserInputError, FileNotFoundError, KeyError, TypeError,
               ValueError, RuntimeError, pickle.UnpicklingError, EOFError)
_VISUALIZER_IDS = itertools.count()
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Overlays and raw predictions of an mmdet (panoptic) or '
        'mmseg (semantic) model on an image or a folder of images')
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('config', help='model config file')
    parser.add_argument('--weights', required=True, help='checkpoint file')
    parser.add_argument('--out-dir', default='outputs',
                        help='where vis/ and preds/ are written')
    parser.add_argument('--device', default='cpu',
                        help='device for inference, e.g. cpu or cuda:0')
    parser.add_argument(
        '--pred-score-thr', type=float, default=0.3,
        help='mmdet: score threshold of drawn instances (panoptic results '
        'are drawn whole)')
    return parser.parse_args(argv)


def list_images(inputs: str) -> list:
    if osp.isfile(inputs):
        return [inputs]
    if not osp.isdir(inputs):
        raise UserInputError(f'image or folder not found: {inputs}')
    images = sorted(
        osp.join(inputs, name) for name in os.listdir(inputs)
        if name.lower().endswith(IMG_EXTENSIONS))
    if not images:
        raise UserInputError(
            f'{inputs}: no images ({", ".join(IMG_EXTENSIONS)}) in the folder')
    return images


def read_rgb(path: str) -> np.ndarray:
    import mmcv
    try:
        return mmcv.imread(path, channel_order='rgb')
    except Exception as err:  # noqa: BLE001  whatever the decoder says
        raise UserInputError(
            f'{path}: not a readable image ({type(err).__name__}: {err})'
        ) from None


def config_dataset_meta(cfg) -> dict:
    """``metainfo`` of the config's test dataset (built lazily, no files)."""
    from mmengine.registry import DATASETS
    dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    dataset_cfg['lazy_init'] = True
    return dict(DATASETS.build(dataset_cfg).metainfo)


def load_model(cfg, scope: str, weights: str, device: str):
    """The model (built as ``init_detector`` / ``init_model`` build it) with
    the checkpoint's weights and ``dataset_meta``; class names and palette
    the checkpoint lacks come from the config's test dataset."""
    from mmengine.runner import load_checkpoint
    with warnings.catch_warnings():
        # "checkpoint is None, COCO classes": the weights are loaded below
        warnings.simplefilter('ignore')
        if scope == 'mmdet':
            from mmdet.apis import init_detector
            model = init_detector(cfg, None, device='cpu')
        else:
            from mmseg.apis import init_model
            model = init_model(cfg, None, device='cpu')
    checkpoint = load_checkpoint(model, weights, map_location='cpu')
    saved = checkpoint.get('meta', {}).get('dataset_meta') or {}
    meta = {k.lower(): v for k, v in saved.items()}
    missing = [k for k in ('classes', 'palette') if not meta.get(k)]
    if missing:
        warnings.warn(
            f"{weights}: meta['dataset_meta'] has no {' or '.join(missing)}; "
            f"taken from the config's test dataset", stacklevel=2)
        meta = dict(config_dataset_meta(cfg), **{
            k: v for k, v in meta.items() if v})
    model.dataset_meta = meta
    return model.to(device).eval()


def build_visualizer(cfg, scope: str, dataset_meta: dict, save_dir: str):
    from mmengine.registry import VISUALIZERS
    vis_cfg = copy.deepcopy(cfg.visualizer)
    vis_cfg.setdefault('_scope_', scope)
    vis_cfg['save_dir'] = save_dir  # overlays go to out_file; backends here
    # a fresh instance (visualisers are per-name singletons in mmengine)
    vis_cfg['name'] = f'image_demo_{next(_VISUALIZER_IDS)}'
    visualizer = VISUALIZERS.build(vis_cfg)
    if scope == 'mmseg':
        visualizer.set_dataset_meta(dataset_meta.get('classes'),
                                    dataset_meta.get('palette'))
    else:
        visualizer.dataset_meta = dataset_meta
    return visualizer


def infer(model, scope: str, path: str):
    if scope == 'mmdet':
        from mmdet.apis import inference_detector
        return inference_detector(model, path)
    from mmseg.apis import inference_model
    return inference_model(model, path)


def panoptic_record(pan: np.ndarray, dataset_meta: dict) -> tuple:
    """(COCO panoptic RGB id map, segments_info) of an mmdet panoptic map
    (``label + instance * INSTANCE_OFFSET``, VOID = ``len(classes)``)."""
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    from panopticapi.utils import id2rgb
    classes = list(dataset_meta['classes'])
    things = set(dataset_meta.get('thing_classes', ()))
    void = len(classes)
    segments = []
    for seg_id in np.unique(pan):
        label = int(seg_id % INSTANCE_OFFSET)
        if label == void:
            continue
        ys, xs = np.nonzero(pan == seg_id)
        x0, y0 = int(xs.min()), int(ys.min())
        segments.append(dict(
            id=int(seg_id), category_id=label, name=classes[label],
            isthing=int(classes[label] in things), area=int(xs.size),
            bbox=[x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]))
    ids = np.where(pan % INSTANCE_OFFSET == void, 0, pan)
    return id2rgb(ids).astype(np.uint8), segments


def semantic_record(labels: np.ndarray, dataset_meta: dict) -> tuple:
    """(uint8 label map, the labels present with their areas)."""
    classes = list(dataset_meta.get('classes') or ())
    values, counts = np.unique(labels, return_counts=True)
    present = [
        dict(label=int(v), name=classes[v] if v < len(classes) else None,
             area=int(c)) for v, c in zip(values, counts) if v != 255]
    return labels.astype(np.uint8), present


def write_prediction(result, scope: str, dataset_meta: dict, stem: str,
                     pred_dir: str) -> None:
    import mmcv
    if scope == 'mmseg':
        image, info = semantic_record(
            result.pred_sem_seg.data[0].cpu().numpy(), dataset_meta)
        mmcv.imwrite(image, osp.join(pred_dir, f'{stem}.png'))
        record = dict(file_name=f'{stem}.png', labels=info)
    elif 'pred_panoptic_seg' in result:
        rgb, segments = panoptic_record(
            result.pred_panoptic_seg.sem_seg[0].cpu().numpy(), dataset_meta)
        mmcv.imwrite(rgb[:, :, ::-1], osp.join(pred_dir, f'{stem}.png'))
        record = dict(file_name=f'{stem}.png', segments_info=segments)
    else:  # a detector without a panoptic head: its instances
        inst = result.pred_instances.cpu()
        record = dict(labels=inst.labels.tolist(),
                      scores=inst.scores.tolist(),
                      bboxes=inst.bboxes.tolist())
    with open(osp.join(pred_dir, f'{stem}.json'), 'w') as f:
        json.dump(record, f, indent=2)


def draw(visualizer, scope: str, image: np.ndarray, result, out_file: str,
         score_thr: float) -> None:
    kwargs = dict(draw_gt=False, show=False, out_file=out_file)
    if scope == 'mmdet':
        kwargs['pred_score_thr'] = score_thr
    visualizer.add_datasample(osp.basename(out_file), image, result,
                              **kwargs)


def main(argv=None):
    args = parse_args(argv)
    with user_errors_to_exit('image_demo', args.config):
        cfg = load_config(args.config)
        scope = host_scope(cfg, args.config)
        check_checkpoint(args.weights, 'weights')
        images = list_images(args.inputs)
    with user_errors_to_exit('image_demo', args.weights, only=LOAD_ERRORS):
        model = load_model(cfg, scope, args.weights, args.device)
        visualizer = build_visualizer(cfg, scope, model.dataset_meta,
                                      args.out_dir)
    vis_dir = osp.join(args.out_dir, 'vis')
    pred_dir = osp.join(args.out_dir, 'preds')
    os.makedirs(vis_dir, exist_ok=True)
    os.makedirs(pred_dir, exist_ok=True)
    for path in images:
        stem = osp.splitext(osp.basename(path))[0]
        with user_errors_to_exit('image_demo', path):
            image = read_rgb(path)
        result = infer(model, scope, path)
        draw(visualizer, scope, image, result,
             osp.join(vis_dir, f'{stem}.png'), args.pred_score_thr)
        write_prediction(result, scope, model.dataset_meta, stem, pred_dir)
        print(f'{path} -> {vis_dir}/{stem}.png, {pred_dir}/{stem}.png/.json')


if __name__ == '__main__':
    main()
