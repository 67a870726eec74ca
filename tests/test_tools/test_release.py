"""Release hygiene: LICENSE, CHANGELOG, the model index that ``mim search
segext`` reads, and the dependency pins.

``mim search`` looks for ``<installed package>/.mim/model-index.yml``;
setup.py copies ``model-index.yml``, ``configs/`` (with the metafiles) and
``tools/`` there for a wheel (symlinks for a develop install).  The mim test
builds a real wheel from a copy of the tree, installs it into a folder and
runs ``mim search segext`` against it.
"""
import glob
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PUBLISHED = ('(paper)', '(mmdet model zoo)')
MEASURED = '(measured here)'
#: configs that are aliases of another config, not models of their own
ALIASES = {'configs/upsnet_coco.py'}


def model_index():
    from modelindex.load_model_index import load
    return load(osp.join(ROOT, 'model-index.yml'))


def leaf_configs():
    paths = glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    rels = {osp.relpath(p, ROOT) for p in paths}
    return sorted(r for r in rels
                  if '/_base_/' not in r and r not in ALIASES)


def test_license_is_the_apache_2_text():
    with open(osp.join(ROOT, 'LICENSE')) as f:
        text = f.read()
    for part in ('Apache License', 'Version 2.0, January 2004',
                 'TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND '
                 'DISTRIBUTION',
                 '9. Accepting Warranty or Additional Liability.',
                 'END OF TERMS AND CONDITIONS'):
        assert part in text
    with open(osp.join(ROOT, 'setup.py')) as f:
        assert "license='Apache License 2.0'" in f.read()


def test_changelog_names_the_current_version():
    from segext.version import __version__
    with open(osp.join(ROOT, 'CHANGELOG.md')) as f:
        assert f'## [{__version__}]' in f.read()


def test_every_config_is_indexed_with_labelled_results():
    index = model_index()
    models = {m.name: m for m in index.models}
    assert {m.config for m in models.values()} == set(leaf_configs())
    collections = {c.name for c in index.collections}
    for name, model in models.items():
        assert osp.splitext(osp.basename(model.config))[0] == name
        assert model.in_collection in collections, name
        for result in model.results or []:
            assert result.dataset.endswith(PUBLISHED + (MEASURED, )), (
                name, result.dataset)
            assert result.metrics, name
    for collection in index.collections:
        assert collection.paper['URL'].startswith('https://arxiv.org/abs/')
        assert osp.isfile(osp.join(ROOT, collection.readme))


def _copy_tree(dst):
    """The repository as a release would see it (no venv, work dirs, data,
    .mim links or caches)."""
    skip_top = {'.git', '.venv', 'work_dirs', 'data', 'build', 'dist'}

    def ignore(folder, names):
        top = osp.abspath(folder) == ROOT
        return [n for n in names
                if (top and n in skip_top) or n in ('.mim', '__pycache__',
                                                    '.pytest_cache')
                or n.endswith('.egg-info')]

    shutil.copytree(ROOT, dst, ignore=ignore)


def test_mim_search_lists_the_models(tmp_path):
    mim = shutil.which('mim', path=osp.dirname(sys.executable))
    assert mim, 'openmim is part of the environment (tools/setup_env.sh)'
    src = tmp_path / 'segext-src'  # (a folder named "src" confuses setuptools)
    _copy_tree(str(src))
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check', '-q']
    env = dict(os.environ, PIP_NO_INPUT='1')
    env.pop('PYTHONPATH', None)
    subprocess.run(pip + ['wheel', '--no-deps', '--no-build-isolation', '-w',
                          str(tmp_path / 'dist'), str(src)],
                   check=True, env=env, timeout=600, capture_output=True)
    wheel, = glob.glob(str(tmp_path / 'dist' / 'segext-*.whl'))
    site = tmp_path / 'site'
    subprocess.run(pip + ['install', '--no-deps', '--target', str(site),
                          wheel], check=True, env=env, timeout=600,
                   capture_output=True)
    proc = subprocess.run([mim, 'search', 'segext'], cwd=str(tmp_path),
                          env=dict(env, PYTHONPATH=str(site)), timeout=300,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    listed = set(re.findall(r'^config id: (\S+)$', proc.stdout, re.M))
    assert listed == {m.name for m in model_index().models}
    assert re.search(r'coco val \(paper\)/pq +42\.5', proc.stdout)
    assert re.search(r'segext synthetic val \(measured here\)/pq +83\.8',
                     proc.stdout)


# ------------------------------------------------------------ dependencies
def _requirements(name):
    with open(osp.join(ROOT, 'requirements', name)) as f:
        return [line for line in f.read().splitlines()
                if line.split('#', 1)[0].strip()]


def test_runtime_pins_say_why():
    for line in _requirements('runtime.txt'):
        req = line.split('#', 1)[0].strip()
        if re.search(r'[<>=]=?', req):
            assert '#' in line, f'pin without a reason: {line!r}'


def _names(lines):
    return {re.split(r'[<>=!~ ;\[]', r.split('#', 1)[0].strip())[0].lower():
            r.split('#', 1)[0].strip() for r in lines}


def test_panopticapi_is_installed_without_its_metadata_deps():
    """panopticapi-lite is not an install_requires (pip would follow its
    metadata: numpy<2, scikit-image & co.); tools/setup_env.sh installs the
    pinned version with --no-deps."""
    assert 'panopticapi-lite' not in _names(_requirements('runtime.txt'))
    assert _names(_requirements('panopticapi.txt')) == {
        'panopticapi-lite': 'panopticapi-lite==0.2.0'}
    with open(osp.join(ROOT, 'tools', 'setup_env.sh')) as f:
        assert '--no-deps -r "$ROOT/requirements/panopticapi.txt"' in f.read()


def test_setuptools_bound_is_what_breaks_without_it():
    """The one build tool in install_requires, and why: mmengine resolves
    ``mmdet::`` config bases through ``pkg_resources`` (setuptools < 82).
    No lower bound (torch declares its own)."""
    assert _names(_requirements('runtime.txt'))['setuptools'] == \
        'setuptools<82'
    config = osp.join(ROOT, 'configs', 'upsnet', 'upsnet_r18_fpn_synthetic.py')
    code = ("import sys; sys.modules['pkg_resources'] = None\n"
            'from mmengine.config import Config\n'
            f'Config.fromfile({config!r})')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0 and 'pkg_resources' in proc.stderr


def test_panopticapi_imports_only_what_the_stack_has():
    """What panopticapi-lite's modules import (the reason it may go in
    without its declared dependencies)."""
    import ast

    import panopticapi
    folder = osp.dirname(panopticapi.__file__)
    imported = set()
    for path in glob.glob(osp.join(folder, '*.py')):
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split('.')[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split('.')[0])
    third_party = imported - set(sys.stdlib_module_names) - {
        'panopticapi', '__future__'}
    # pycocotools: only its optional combine script; mmdet requires it anyway
    assert third_party == {'numpy', 'PIL', 'pycocotools'}, third_party
    from importlib.metadata import requires
    assert any(r.startswith('pycocotools') for r in requires('mmdet'))
