#!/usr/bin/env bash
# Create/refresh segext's virtual environment: torch FIRST (pinned), mmcv 2.1.0
# with compiled ops (a wheel from PIP_FIND_LINKS when one fits, else built from
# source), then the pinned OpenMMLab stack and segext itself (editable).
#
# Idempotent: a second run with unchanged requirements checks imports and exits
# in seconds.  Knobs (environment):
#   SEGEXT_VENV=.venv            where the environment lives
#   PYTHON=python3               interpreter used to create it
#   SEGEXT_TORCH=torch==2.13.0   torch requirement when torch is NOT installed;
#                                an existing torch (e.g. your CUDA build) is kept
#   SEGEXT_NUMPY='numpy>=1.23,<3'  numpy requirement: an installed 1.x or 2.x is
#                                kept, a fresh environment gets the newest 2.x
#                                (the suite runs on both, docs/testing.md)
#   PIP_FIND_LINKS=DIR           pip's own knob: a folder with a prebuilt mmcv
#   MAX_JOBS=2                   parallel compile jobs for the mmcv source build
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SEGEXT_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
SEGEXT_TORCH="${SEGEXT_TORCH:-torch==2.13.0}"
SEGEXT_NUMPY="${SEGEXT_NUMPY:-numpy>=1.23,<3}"
MMCV_VERSION=2.1.0
log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

stamp_inputs() {
  cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$ROOT/tools/setup_env.sh"
  echo "$SEGEXT_TORCH $SEGEXT_NUMPY"
}
WANT="$(stamp_inputs | sha256sum | cut -d' ' -f1)"
STAMP="$VENV/.segext-setup-stamp"
VPY="$VENV/bin/python"

stack_imports() {
  "$VPY" - <<'PY' >/dev/null 2>&1
import torch, mmengine, mmdet, mmseg, panopticapi, segext  # noqa
import mmcv
from mmcv.ops import RoIAlign, DeformConv2d  # noqa  (compiled ops present)
import mmcv._ext  # noqa
assert mmcv.__version__ == '2.1.0', mmcv.__version__
PY
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && stack_imports; then
  log "environment $VENV is up to date"
  exit 0
fi

if [ ! -x "$VPY" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VPY" -m pip --disable-pip-version-check)
export PIP_NO_INPUT=1

# 1. torch first: anything that requires an unpinned torch would otherwise pull
#    the registry's newest (CUDA) build.  A torch that is already there is kept.
if "$VPY" -c 'import torch' >/dev/null 2>&1; then
  log "keeping installed torch $("$VPY" -c 'import torch;print(torch.__version__, "cuda" if torch.version.cuda else "cpu")')"
else
  log "installing $SEGEXT_TORCH"
  "${PIP[@]}" install -q "$SEGEXT_TORCH"
fi

# 2. build tooling, pinned HERE only: torch 2.13 declares setuptools >= 77;
#    mmcv's setup.py and mmengine's mmdet::/mmseg:: base lookup import
#    pkg_resources (gone in setuptools 82; runtime.txt keeps that bound for
#    users); < 80 still has the egg-link `develop` install used in step 5.
"${PIP[@]}" install -q "setuptools>=77,<80" wheel "$SEGEXT_NUMPY"

# 3. mmcv 2.1.0 with ops.  mmdet 3.3.0 / mmseg 1.2.2 refuse mmcv >= 2.2, and
#    PyPI has no mmcv 2.1.0 wheel for this torch: use one from PIP_FIND_LINKS if
#    it imports with its compiled ops, else build from source.
mmcv_ok() {
  "$VPY" -c 'import mmcv, mmcv._ext; assert mmcv.__version__ == "2.1.0"' >/dev/null 2>&1
}
if mmcv_ok; then
  log "mmcv $MMCV_VERSION with ops already installed"
else
  # (with its dependencies, pinned: importing mmcv needs mmengine)
  if "${PIP[@]}" install -q --only-binary=mmcv "mmcv==$MMCV_VERSION" \
      mmengine==0.10.7 "$SEGEXT_NUMPY" >/dev/null 2>&1 && mmcv_ok; then
    log "installed mmcv $MMCV_VERSION from a prebuilt wheel (PIP_FIND_LINKS=${PIP_FIND_LINKS:-unset})"
  else
    log "no usable mmcv $MMCV_VERSION wheel: building from source with ops (about 13 min on 2 cores)"
    "${PIP[@]}" uninstall -q -y mmcv >/dev/null 2>&1 || true
    "${PIP[@]}" install -q ninja psutil mmengine==0.10.7 "$SEGEXT_NUMPY"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
      "${PIP[@]}" install --no-build-isolation --no-binary=mmcv \
      "mmcv==$MMCV_VERSION" mmengine==0.10.7 "$SEGEXT_NUMPY"
    mmcv_ok || { log "ERROR: mmcv $MMCV_VERSION built but its ops do not import"; exit 1; }
  fi
fi

# 4. the pinned stack and what mmseg/panopticapi need at import.
log "installing the pinned OpenMMLab stack"
"${PIP[@]}" install -q -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt" \
  "$SEGEXT_NUMPY"
# panopticapi without the packages its metadata names but its code never
# imports (scikit-image, imageio, tifffile, ...): see requirements/panopticapi.txt
"${PIP[@]}" install -q --no-deps -r "$ROOT/requirements/panopticapi.txt"
# openmim without its `opendatalab` dependency (it pulls openxlab, which pins
# setuptools 60): see requirements/mim.txt.
"${PIP[@]}" install -q -r "$ROOT/requirements/mim.txt" "$SEGEXT_NUMPY"
"${PIP[@]}" install -q --no-deps openmim==0.3.9

# 5. segext itself, editable (also links tools/ and configs/ into segext/.mim).
#    A legacy `develop` install (egg-link, as OpenMMLab repos use): mim locates
#    a package through its distribution's location, which a PEP 660 editable
#    install reports as site-packages, so `mim train segext` would not find
#    segext/.mim/tools.
"${PIP[@]}" install -q --no-build-isolation --no-use-pep517 --no-deps -e "$ROOT"

if ! stack_imports; then
  log "ERROR: the environment does not import cleanly:"
  "$VPY" -c 'import torch, mmengine, mmcv, mmcv._ext, mmdet, mmseg, panopticapi, segext'
  exit 1
fi
echo "$WANT" > "$STAMP"
log "ready: $("$VPY" -c 'import torch, mmcv, mmdet, mmseg; print("torch", torch.__version__, "mmcv", mmcv.__version__, "mmdet", mmdet.__version__, "mmseg", mmseg.__version__)')"
