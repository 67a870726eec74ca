"""tools/dataset_converters/camvid_class_weights.py on the real CamVid train
split (367 annotations).  Skipped without the data (``real_camvid``)."""
import importlib.util
import os.path as osp
import re

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
spec = importlib.util.spec_from_file_location(
    'camvid_class_weights_real',
    osp.join(ROOT, 'tools', 'dataset_converters', 'camvid_class_weights.py'))
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)

# SegNet-Tutorial, Models/segnet_train.prototxt, class_weighting
TUTORIAL = dict(Sky=0.2595, Building=0.1826, Pole=4.5640, Road=0.1417,
                Pavement=0.9051, Tree=0.3826, SignSymbol=9.6446,
                Fence=1.8418, Car=0.6823, Pedestrian=6.2478,
                Bicyclist=7.3614)


def test_weights_of_the_real_train_split(real_camvid, capsys):
    weights = tool.main([real_camvid])
    out = capsys.readouterr().out
    assert out.startswith('367 annotations in ')
    rows = dict(re.findall(r'^(\w+)\s+(\d+) ', out, re.M))
    class_pixels = np.array([int(rows[c]) for c in tool.CAMVID_CLASSES])
    # every pixel is one of the 11 classes or void
    assert class_pixels.sum() + int(rows['void']) == 367 * 360 * 480
    assert (class_pixels > 0).all() and (weights > 0).all()
    # 11 classes: the median class has weight exactly 1
    assert np.isclose(np.sort(weights)[5], 1.0)
    # the imbalance SegNet's loss corrects: road/building/sky are the
    # lightest, and the four rarest classes get the tutorial's four largest
    # weights, each within x3 of the published value
    names = tool.CAMVID_CLASSES
    order = [names[i] for i in np.argsort(weights)]
    assert set(order[:3]) == {'Road', 'Building', 'Sky'}
    assert set(order[-4:]) == {'Pole', 'SignSymbol', 'Pedestrian',
                               'Bicyclist'} == set(sorted(
                                   TUTORIAL, key=TUTORIAL.get)[-4:])
    ratio = weights / np.array([TUTORIAL[c] for c in names])
    assert ((ratio > 1 / 3) & (ratio < 3)).all(), dict(zip(names, ratio))
    config_line = 'class_weight=[' + ', '.join(
        f'{w:.4f}' for w in weights) + ']'
    assert config_line in out
