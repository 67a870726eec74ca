"""tools/slurm_{train,test}.sh's srun command lines, with fake srun/sinfo.

No cluster needed: the fakes print what they were given.  GPU partitions
get upstream's command (--gres=gpu:N, one task per GPU); CPU partitions and
GPUS_PER_NODE=0 never get --gres, and their tasks see no CUDA device.
"""
import os
import os.path as osp
import subprocess

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture
def fake_slurm(tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text(
        '#!/usr/bin/env bash\n'
        'echo "SRUN $*"\n'
        'echo "ENV CUDA_VISIBLE_DEVICES=[${CUDA_VISIBLE_DEVICES-unset}]'
        ' OMP_NUM_THREADS=[${OMP_NUM_THREADS-unset}]'
        ' MASTER_PORT=[${MASTER_PORT-unset}]"\n')
    (bin_dir / 'sinfo').write_text(
        '#!/usr/bin/env bash\necho "${FAKE_GRES-(null)}"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)

    def run(script, args, **env):
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ('CUDA_VISIBLE_DEVICES', 'OMP_NUM_THREADS',
                                 'MASTER_PORT', 'GPUS', 'GPUS_PER_NODE',
                                 'CPUS_PER_TASK', 'TASKS_PER_NODE', 'PORT',
                                 'SRUN_ARGS')}
        full_env['PATH'] = f'{bin_dir}{os.pathsep}{os.environ["PATH"]}'
        full_env.update(env)
        proc = subprocess.run(
            ['bash', osp.join(ROOT, 'tools', script), *args],
            env=full_env, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        srun = next(ln for ln in lines if ln.startswith('SRUN '))
        envl = next(ln for ln in lines if ln.startswith('ENV '))
        return srun, envl, proc.stderr

    return run


TRAIN = ('slurm_train.sh', ['p1', 'job', 'cfg.py', 'work', '--resume',
                            '--cfg-options', 'a=1'])
TEST = ('slurm_test.sh', ['p1', 'job', 'cfg.py', 'ckpt.pth', '--out', 'x'])


@pytest.mark.parametrize('script,args', [TRAIN, TEST])
def test_gpu_partition_is_upstream(fake_slurm, script, args):
    srun, env, _ = fake_slurm(script, args, FAKE_GRES='gpu:8')
    assert srun.startswith('SRUN -p p1 --job-name=job --ntasks=8 '
                           '--cpus-per-task=5 --gres=gpu:8 '
                           '--ntasks-per-node=8 --kill-on-bad-exit=1 ')
    assert 'CUDA_VISIBLE_DEVICES=[unset]' in env
    assert '--launcher=slurm' in srun
    assert srun.endswith(' '.join(args[4:]))
    if script == 'slurm_train.sh':
        assert ' cfg.py --work-dir=work --launcher=slurm' in srun


@pytest.mark.parametrize('gres,gpus_per_node', [('(null)', '8'),
                                                ('gpu:8', '0')])
def test_cpu_mode_never_asks_for_gpus(fake_slurm, gres, gpus_per_node):
    srun, env, err = fake_slurm(*TRAIN, FAKE_GRES=gres, GPUS='2',
                                GPUS_PER_NODE=gpus_per_node,
                                CPUS_PER_TASK='1', PORT='29612')
    assert '--gres' not in srun
    assert '--ntasks=2 --cpus-per-task=1' in srun
    assert 'CUDA_VISIBLE_DEVICES=[]' in env  # tasks take the gloo path
    assert 'OMP_NUM_THREADS=[1]' in env and 'MASTER_PORT=[29612]' in env
    assert 'CPU mode' in err


def test_sinfo_failure_keeps_upstream_gpu_mode(fake_slurm):
    srun, _, _ = fake_slurm(*TRAIN, FAKE_GRES='')  # no answer from sinfo
    assert '--gres=gpu:8' in srun


def test_cpu_mode_tasks_per_node_and_srun_args(fake_slurm):
    srun, _, _ = fake_slurm(*TRAIN, GPUS='4', GPUS_PER_NODE='0',
                            TASKS_PER_NODE='2', CPUS_PER_TASK='3',
                            SRUN_ARGS='--nodes=2 --time=5')
    assert '--ntasks=4 --cpus-per-task=3 --ntasks-per-node=2' in srun
    assert '--kill-on-bad-exit=1 --nodes=2 --time=5 ' in srun
