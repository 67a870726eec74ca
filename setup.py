"""segext: classic dense-prediction models as OpenMMLab 3.x modules.

Install with ``bash tools/setup_env.sh`` (creates ``.venv``, installs torch
first, then mmcv with ops, then this package in editable mode), or into an
environment that already has torch with ``pip install -e .`` followed by
``pip install --no-deps -r requirements/panopticapi.txt`` (PQ's
``panopticapi``; its declared dependencies are not what its code uses).
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version():
    scope = {}
    with open(osp.join(HERE, 'segext', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(name):
    path = osp.join(HERE, 'requirements', name)
    reqs = []
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line and not line.startswith('-'):
                reqs.append(line)
    return reqs


def add_mim_extension():
    """Expose tools/ and configs/ as ``segext/.mim`` (as mmdet/mmseg do), so
    ``mim train segext CONFIG`` and ``mim test segext CONFIG`` find them.

    Editable installs (``develop``/``pip install -e``) get symlinks; a normal
    build gets copies.
    """
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'symlink'
    elif any(a in sys.argv for a in ('sdist', 'bdist_wheel', 'install',
                                      'build', 'build_py')):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(HERE, 'segext', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ('tools', 'configs', 'model-index.yml'):
        src = osp.join(HERE, name)
        dst = osp.join(mim_path, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_path), dst)
        else:
            (shutil.copytree if osp.isdir(src) else shutil.copyfile)(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='segext',
        version=read_version(),
        description='Dilated context module, DRN, SegNet and UPSNet as '
        'OpenMMLab 3.x (mmdet/mmseg) modules',
        long_description=open(osp.join(HERE, 'README.md')).read()
        if osp.exists(osp.join(HERE, 'README.md')) else '',
        long_description_content_type='text/markdown',
        python_requires='>=3.8',
        packages=find_packages(exclude=('configs', 'tools', 'tests', 'docs')),
        include_package_data=True,
        package_data={'segext': ['.mim/**/*', '.mim/*', 'ops/csrc/*.cpp']},
        install_requires=read_requirements('runtime.txt'),
        extras_require={'tests': read_requirements('tests.txt')},
        license='Apache License 2.0',
        zip_safe=False,
    )
