"""compare_panoptic's summary and verdict on hand-made per-seed results, and
its argument checks (the runs themselves: tests/test_configs/
test_panoptic_demo_configs.py trains both configs)."""
import importlib.util
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
spec = importlib.util.spec_from_file_location(
    'compare_panoptic',
    osp.join(REPO, 'tools/analysis_tools/compare_panoptic.py'))
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)


def _runs(pq):
    return {f'{name}/{seed}': dict(metrics=dict(PQ=v, PQ_th=v - 10,
                                                PQ_st=v + 10))
            for name, values in pq.items() for seed, v in enumerate(values)}


def test_summary_is_mean_and_sample_std_per_model():
    runs = _runs(dict(panoptic_fpn=[70, 72, 74], upsnet=[80, 81, 82]))
    summary = compare.summarise(runs, [0, 1, 2])
    assert summary['panoptic_fpn']['PQ'] == pytest.approx((72, 2))
    assert summary['upsnet']['PQ_st'] == pytest.approx((91, 1))
    assert summary['upsnet']['n'] == 3


def test_verdict_says_whether_the_difference_exceeds_the_spread():
    ahead = compare.verdict(compare.summarise(
        _runs(dict(panoptic_fpn=[70, 72, 74], upsnet=[80, 81, 82])),
        [0, 1, 2]))
    assert ahead[0].startswith('PQ: UPSNet - Panoptic FPN = +9.0')
    assert 'UPSNet is ahead by more than the spread' in ahead[0]
    within = compare.verdict(compare.summarise(
        _runs(dict(panoptic_fpn=[70, 76, 82], upsnet=[75, 77, 79])),
        [0, 1, 2]))
    assert all('within the seed spread' in line for line in within)
    behind = compare.verdict(compare.summarise(
        _runs(dict(panoptic_fpn=[80, 81, 82], upsnet=[70, 71, 72])),
        [0, 1, 2]))
    assert 'Panoptic FPN is ahead by more than the spread' in behind[0]


def test_verdict_needs_two_seeds_of_each_model():
    runs = _runs(dict(panoptic_fpn=[70, 72], upsnet=[80]))
    assert compare.verdict(compare.summarise(runs, [0, 1])) == [
        'not enough finished seeds for a verdict']


@pytest.mark.parametrize('argv, message', [
    (['--seeds', '0'], '--seeds'),
    (['--seeds', '1', '1'], '--seeds'),
    (['--jobs', '0'], '--jobs'),
    (['--resume'], '--resume'),
])
def test_bad_arguments_exit_2_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        compare.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
