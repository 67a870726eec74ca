"""``import segext`` (what ``custom_imports`` does) registers every public
module class in its host library's registries."""
import inspect

import pytest

import segext


def public_classes(package):
    for name in getattr(package, '__all__', []):
        obj = getattr(package, name)
        if inspect.isclass(obj):
            yield name, obj


def registries():
    from mmdet.registry import DATASETS as DET_DATASETS
    from mmdet.registry import HOOKS as DET_HOOKS
    from mmdet.registry import METRICS as DET_METRICS
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.registry import TRANSFORMS as DET_TRANSFORMS
    from mmengine.registry import HOOKS as ROOT_HOOKS
    from mmengine.registry import MODEL_WRAPPERS, RUNNERS
    from mmengine.registry import MODELS as ROOT_MODELS
    from mmseg.registry import DATASETS as SEG_DATASETS
    from mmseg.registry import METRICS as SEG_METRICS
    from mmseg.registry import MODELS as SEG_MODELS
    from mmseg.registry import TRANSFORMS as SEG_TRANSFORMS
    return (DET_MODELS, SEG_MODELS, ROOT_MODELS, DET_DATASETS, SEG_DATASETS,
            DET_TRANSFORMS, SEG_TRANSFORMS, DET_METRICS, SEG_METRICS,
            DET_HOOKS, ROOT_HOOKS, RUNNERS, MODEL_WRAPPERS)


def is_registered(cls):
    for reg in registries():
        if reg.module_dict.get(cls.__name__) is cls:
            return True
        if any(v is cls for v in reg.module_dict.values()):
            return True
    return False


MODEL_PACKAGES = ('backbones', 'necks', 'decode_heads', 'seg_heads',
                  'panoptic_fusion_heads', 'detectors')


@pytest.mark.parametrize('pkg', MODEL_PACKAGES)
def test_model_classes_are_registered(pkg):
    package = getattr(segext.models, pkg)
    for name, cls in public_classes(package):
        # building blocks (DRN's BasicBlock, ...) are exported for reuse,
        # not built from configs
        is_block = name.endswith(('Block', 'Bottleneck', 'Layer', 'Stage'))
        if issubclass(cls, __import__('torch').nn.Module) and not is_block:
            assert is_registered(cls), f'segext.models.{pkg}.{name}'


def test_datasets_and_hooks_are_registered():
    for pkg in (segext.datasets, segext.engine):
        for name, cls in public_classes(pkg):
            if name.endswith(('Dataset', 'Hook', 'Metric', 'Runner',
                              'DataParallel')):
                assert is_registered(cls), f'{pkg.__name__}.{name}'


def test_custom_imports_in_a_stock_config_registers(tmp_path):
    """What a user adds to an mmdet/mmseg config is enough."""
    from mmengine.config import Config
    cfg_file = tmp_path / 'c.py'
    cfg_file.write_text(
        "custom_imports = dict(imports=['segext'], "
        "allow_failed_imports=False)\n")
    Config.fromfile(str(cfg_file))  # imports segext through custom_imports
    from mmdet.registry import HOOKS
    assert HOOKS.get('PNGDetVisualizationHook') is not None
