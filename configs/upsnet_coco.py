# Alias of configs/upsnet/upsnet_r50_fpn_1x_coco.py: UPSNet R-50-FPN on COCO panoptic (data/coco/), the authors' 1x schedule.
_base_ = './upsnet/upsnet_r50_fpn_1x_coco.py'
