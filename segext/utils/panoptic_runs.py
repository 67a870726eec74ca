"""Train-then-test runs of panoptic configs for the main job and the
comparison (``tools/main_job.py``, ``tools/analysis_tools/
compare_panoptic.py``).

Each run calls the project's own ``tools/train.py`` and ``tools/test.py`` in
a child process: the full log goes to ``<work_dir>/{train,test}.log``, and a
one-line-per-logged-iteration view (iteration, loss, ETA) goes to the
terminal.  Nothing here changes how mmengine logs.
"""
from __future__ import annotations

import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional

import numpy as np

__all__ = [
    'ensure_synthetic', 'progress_line', 'run_tool', 'train_and_test',
    'read_test_metrics', 'read_classwise', 'overlay_panels', 'montage',
    'METRIC_KEYS'
]

METRIC_KEYS = ('PQ', 'SQ', 'RQ', 'PQ_th', 'SQ_th', 'RQ_th', 'PQ_st', 'SQ_st',
               'RQ_st')

# mmengine's LoggerHook lines: "Iter(train) [ 40/360]  lr: ... eta: 0:03:07
# time: 0.81 ... loss: 2.2196  loss_rpn_cls: ..."
_ITER = re.compile(r'Iter\((train|val|test)\)\s*\[\s*(\d+)/(\d+)\]')
_ETA = re.compile(r'eta: (\S+)')
_TIME = re.compile(r'\btime: ([\d.]+)')
_LOSS = re.compile(r'\bloss: ([\d.]+)')


def ensure_synthetic(data_root: str, size, num_train: int, num_val: int,
                     seed: int = 0) -> bool:
    """Write the synthetic COCO-panoptic dataset unless it is there.

    Returns True if it was written now."""
    if osp.isfile(osp.join(data_root, 'annotations', 'panoptic_val2017.json')):
        return False
    from segext.datasets.synthetic import generate
    generate(data_root, layout='coco', num_train=num_train, num_val=num_val,
             size=tuple(size), seed=seed)
    return True


def progress_line(line: str, tag: str) -> Optional[str]:
    """The terminal view of one mmengine log line, or None to keep it in the
    log only.  ``tag`` names the run (e.g. ``upsnet seed 0``)."""
    m = _ITER.search(line)
    if not m:
        return None
    phase, it, total = m.group(1), int(m.group(2)), int(m.group(3))
    parts = [f'{tag:<18}{phase:<6}{it:>5}/{total:<5}']
    loss = _LOSS.search(line)
    if loss:
        parts.append(f'loss {float(loss.group(1)):6.3f}')
    step = _TIME.search(line)
    if step:
        parts.append(f'{float(step.group(1)):5.2f} s/it')
    eta = _ETA.search(line)
    if eta:
        parts.append(f'eta {eta.group(1)}')
    return '  '.join(parts)


def run_tool(cmd: List[str], log_path: str, cwd: str, tag: str,
             env: Optional[dict] = None, echo: bool = True) -> None:
    """Run a tool, writing its whole output to ``log_path`` and the progress
    lines to the terminal; exit with the log's tail if it fails."""
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, text=True,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, bufsize=1)
        for line in proc.stdout:
            log.write(line)
            shown = progress_line(line, tag) if echo else None
            if shown:
                print(shown, flush=True)
        proc.wait()
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-4000:]
        sys.exit(f'{tag}: `{" ".join(cmd)}` failed (exit {proc.returncode}); '
                 f'last lines of {log_path}:\n{tail}')


def _data_root_options(data_root: str) -> List[str]:
    root = data_root.rstrip('/') + '/'
    ann = f'{root}annotations/panoptic_val2017'
    opts = [f'{split}_dataloader.dataset.data_root={root}'
            for split in ('train', 'val', 'test')]
    for split in ('val', 'test'):
        opts += [f'{split}_evaluator.0.ann_file={ann}.json',
                 f'{split}_evaluator.0.seg_prefix={ann}/']
    return opts


def train_and_test(config: str, work_dir: str, root: str, tag: str, *,
                   data_root: Optional[str] = None, seed: Optional[int] = None,
                   max_iters: Optional[int] = None, threads: Optional[int] = None,
                   show: bool = True, echo: bool = True) -> dict:
    """``tools/train.py`` then ``tools/test.py`` (with ``--show-dir vis``
    if ``show``: mmdet draws every test image) on one config.

    Validation while training is switched off (``val_begin`` past the end):
    the test run evaluates the last checkpoint once, with overlays, and its
    class-wise PQ table.  Returns metrics, class-wise PQ, seconds (wall and
    the children's CPU) and the overlay paths."""
    from mmengine.config import Config
    os.makedirs(work_dir, exist_ok=True)
    iters = max_iters or Config.fromfile(osp.join(root, config)).train_cfg[
        'max_iters']
    opts = _data_root_options(data_root) if data_root else []
    if seed is not None:
        opts.append(f'randomness.seed={seed}')
    train_opts = opts + [f'train_cfg.max_iters={iters}',
                         f'train_cfg.val_begin={iters + 1}']
    test_opts = opts + ['test_evaluator.0.classwise=True']
    env = dict(os.environ)
    env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)
    py = sys.executable
    cpu0 = os.times()
    t0 = time.time()
    run_tool([py, 'tools/train.py', config, '--work-dir', work_dir,
              '--cfg-options'] + train_opts, osp.join(work_dir, 'train.log'),
             root, tag, env, echo)
    t1 = time.time()
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    show_args = ['--show-dir', 'vis'] if show else []
    run_tool([py, 'tools/test.py', config, ckpt, '--work-dir', work_dir] +
             show_args + ['--cfg-options'] + test_opts,
             osp.join(work_dir, 'test.log'), root, tag, env, echo)
    t2 = time.time()
    cpu1 = os.times()
    cpu_s = (cpu1.children_user + cpu1.children_system -
             cpu0.children_user - cpu0.children_system)
    return dict(
        config=config, seed=seed, max_iters=iters, checkpoint=ckpt,
        metrics=read_test_metrics(work_dir),
        classwise=read_classwise(osp.join(work_dir, 'test.log')),
        train_s=t1 - t0, test_s=t2 - t1, cpu_s=cpu_s,
        pngs=sorted(glob.glob(osp.join(work_dir, '*', 'vis', '*.png'))))


def read_test_metrics(work_dir: str) -> Dict[str, float]:
    """The ``coco_panoptic/*`` scalars mmengine dumped after the test loop."""
    files = sorted(glob.glob(osp.join(work_dir, '*', '*.json')),
                   key=osp.getmtime)
    for path in reversed(files):
        with open(path) as f:
            for line in reversed(f.read().splitlines()):
                rec = json.loads(line)
                if any(k.startswith('coco_panoptic/') for k in rec):
                    return {k.split('/', 1)[1]: v for k, v in rec.items()
                            if k.startswith('coco_panoptic/')}
    raise RuntimeError(f'no panoptic metrics found under {work_dir}')


def read_classwise(log_path: str) -> Dict[str, Dict[str, float]]:
    """Class-wise PQ/SQ/RQ from the table mmdet's ``CocoPanopticMetric``
    (``classwise=True``) prints: rows of ``| name | PQ | SQ | RQ | ...``."""
    with open(log_path) as f:
        text = f.read()
    start = text.rfind('Classwise Panoptic Evaluation Results:')
    if start < 0:
        return {}
    out = {}
    for line in text[start:].splitlines()[1:]:
        if line.startswith('+'):
            continue
        if not line.startswith('|'):
            break
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        for i in range(0, len(cells) - 3, 4):
            name = cells[i]  # 'None': the padding of a short last row
            if name not in ('', 'category', 'None'):
                out[name] = dict(zip(('PQ', 'SQ', 'RQ'),
                                     map(float, cells[i + 1:i + 4])))
    return out


def overlay_panels(overlay_path: str, data_root: str) -> List[np.ndarray]:
    """``[image, ground truth, prediction]`` (RGB) of one val image from its
    ``tools/test.py --show-dir`` overlay, which mmdet draws as
    ``ground truth | prediction`` side by side."""
    import cv2
    vis = cv2.cvtColor(cv2.imread(overlay_path), cv2.COLOR_BGR2RGB)
    half = vis.shape[1] // 2
    name = osp.splitext(osp.basename(overlay_path))[0] + '.jpg'
    img = cv2.imread(osp.join(data_root, 'val2017', name))
    return [cv2.cvtColor(img, cv2.COLOR_BGR2RGB), vis[:, :half],
            vis[:, half:]]


def montage(rows: List[List[np.ndarray]], titles: List[str],
            path: str) -> str:
    """Write a grid of equally sized RGB panels with a title over each
    column; returns ``path``."""
    import cv2
    h, w = rows[0][0].shape[:2]
    scale = max(1, 256 // w)  # small toy images: enlarge (nearest) to read
    band = 22
    grid = np.full((band + len(rows) * (h * scale + 4),
                    len(titles) * (w * scale + 4), 3), 255, np.uint8)
    for c, title in enumerate(titles):
        cv2.putText(grid, title, (c * (w * scale + 4) + 4, 16),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for r, panels in enumerate(rows):
        for c, panel in enumerate(panels):
            big = cv2.resize(panel, (w * scale, h * scale),
                             interpolation=cv2.INTER_NEAREST)
            y, x = band + r * (h * scale + 4), c * (w * scale + 4)
            grid[y:y + h * scale, x:x + w * scale] = big
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    cv2.imwrite(path, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return path
