# A stock mmdet config used from a project that has segext installed: the
# ONLY addition is `custom_imports`.  It trains with segext's tools/train.py,
# with mmdet's own tools/train.py, and with `mim train mmdet`.
#
# Testing on CPU?  mmdet 3.3.0's CocoPanopticMetric relabels VOID as class 0
# in the CPU prediction itself, so --show-dir overlays and --out dumps show
# VOID as "person".  The opt-in fix is one more line (docs/inference.md):
#   val_evaluator = test_evaluator = dict(type='NonMutatingCocoPanopticMetric')
_base_ = 'mmdet::panoptic_fpn/panoptic-fpn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['segext'], allow_failed_imports=False)
custom_hooks = [
    dict(type='RNGStateHook'),  # bit-identical --resume
    dict(type='NonFiniteCheckHook'),  # stop on NaN/inf, never save it
]
