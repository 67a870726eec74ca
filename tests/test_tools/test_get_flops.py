"""tools/analysis_tools/get_flops.py: one table row per config, for both
scopes, with segext's deformable convs and 2-bit unpooling traced; a bad
config is one line and exit code 2."""
import importlib.util
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'get_flops.py')
SEGNET = 'configs/segnet/segnet_vgg16-bn_synthetic.py'
UPSNET = 'configs/upsnet/upsnet_r18_fpn_synthetic.py'

pytestmark = pytest.mark.usefixtures('one_thread')


def load_tool():
    spec = importlib.util.spec_from_file_location('get_flops', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(*args):
    return subprocess.run([sys.executable, TOOL, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_table_for_both_scopes():
    proc = run_tool(SEGNET, UPSNET, '--shape', '64', '96')
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    rows = [line for line in out.splitlines() if line.startswith('| config')
            or line.startswith('| configs/')]
    assert len(rows) == 3, out
    segnet, upsnet = (r.split('|')[1:-1] for r in rows[1:])
    assert [c.strip() for c in segnet[:3]] == [SEGNET, 'mmseg', '64x96']
    assert [c.strip() for c in upsnet[:3]] == [UPSNET, 'mmdet', '64x96']
    for row in (segnet, upsnet):
        assert row[3].strip()[-1] in 'MG' and row[4].strip()[-1] in 'KM'


def test_deform_convs_are_counted():
    """mmcv's DeformConv2dFunction node counts as the conv it generalises:
    the total exceeds the count without the extra handle by exactly
    ``out.numel() * weight[0].numel()`` per deformable-conv call, ``out`` as
    mmcv computes it (maps smaller than the 3x3 kernel padded to 3x3: the
    2x3 P5 of a 64x96 input)."""
    import torch
    from mmengine.config import Config

    from segext.models.layers import DeformConv2dWithOffset

    tool = load_tool()
    cfg = Config.fromfile(osp.join(ROOT, UPSNET))
    expected = []

    def record(module, args, out):
        if isinstance(module, DeformConv2dWithOffset):
            n, c, h, w = (int(s) for s in out.shape)
            expected.append(n * c * max(h, 3) * max(w, 3) *
                            module.weight[0].numel())

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        with_dcn = tool.complexity(cfg, 'mmdet', (64, 96))['flops']
    finally:
        hook.remove()
    handles = dict(tool.EXTRA_HANDLES)
    tool.EXTRA_HANDLES.clear()
    try:
        without = tool.complexity(cfg, 'mmdet', (64, 96))['flops']
    finally:
        tool.EXTRA_HANDLES.update(handles)
    assert len(expected) == 12  # 3 shared DCNs on P2..P5
    assert with_dcn - without == sum(expected)


def test_bad_config_is_one_line_and_exit_2(tmp_path):
    proc = run_tool(str(tmp_path / 'missing.py'))
    assert proc.returncode == 2
    assert 'config file not found' in proc.stderr
    assert 'Traceback' not in proc.stderr
