# Alias: `python tools/train.py configs/upsnet_coco.py` trains UPSNet R-50-FPN
# on COCO panoptic with the authors' schedule.
_base_ = './upsnet/upsnet_r50_fpn_1x_coco.py'
