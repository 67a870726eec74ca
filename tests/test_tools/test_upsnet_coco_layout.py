"""``python tools/train.py configs/upsnet_coco.py`` starts training when COCO
panoptic sits at ``data/coco`` -- shown with the synthetic generator writing a
COCO-layout copy (the real 133 categories) there.  Only the image size, the
schedule length and the ImageNet download (no network here) are overridden;
the data location is the config's own."""
import os
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_upsnet_coco_trains_and_evaluates_from_data_coco(tmp_path):
    from segext.datasets.synthetic import generate
    generate(str(tmp_path / 'data' / 'coco'), layout='coco-categories',
             num_train=2, num_val=1, size=(64, 96), seed=11)
    work = tmp_path / 'work'
    cmd = [
        sys.executable, osp.join(ROOT, 'tools', 'train.py'),
        osp.join(ROOT, 'configs', 'upsnet_coco.py'), '--work-dir', str(work),
        '--cfg-options', 'model.backbone.init_cfg=None',
        'train_cfg.max_epochs=1', 'train_dataloader.batch_size=2',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        'train_dataloader.dataset.pipeline.2.scale=(96,64)',
        'val_dataloader.dataset.pipeline.1.scale=(96,64)'
    ]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, timeout=900,
                          capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    assert 'loss_panoptic' in log and 'loss_sem_seg' in log or \
        'loss_panoptic' in log, log[-3000:]
    assert osp.isfile(work / 'epoch_1.pth')
    assert 'coco_panoptic/PQ' in log, log[-3000:]
