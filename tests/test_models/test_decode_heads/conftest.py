"""The decode heads are mmseg modules: build them in mmseg's scope, whatever
default scope an earlier test (an mmdet tool run, say) left current."""
import pytest
from mmengine.registry import DefaultScope


@pytest.fixture(autouse=True)
def _mmseg_scope():
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield
