# segext -- every target installs what it needs (tools/setup_env.sh is
# idempotent: seconds when the environment is already there).
PY      := .venv/bin/python
SETUP   := bash tools/setup_env.sh

.PHONY: setup demo compare test test-slurm benchmarks benchmark-camvid data clean-demo

setup:
	$(SETUP)

## The main job on the embedded default: UPSNet on synthetic data, CPU, minutes.
demo: setup
	$(PY) tools/main_job.py

## UPSNet vs Panoptic FPN over 5 training seeds (same data, schedule,
## backbone, FPN, RoI heads); mean +- std and whether the gap beats the spread.
compare: setup
	$(PY) tools/analysis_tools/compare_panoptic.py $(COMPARE_ARGS)

## The default test suite (CPU, < 20 min on 2 cores).
test: setup
	$(PY) -m pytest -q --durations=15 $(PYTEST_ARGS)

## Only the real-Slurm tests (root: installs and starts a local cluster).
test-slurm: setup
	SEGEXT_REQUIRE_SLURM=1 $(PY) -m pytest -q -m slurm tests/test_tools/test_slurm.py

## Synthetic dataset at data/synthetic (COCO panoptic + semantic PNGs).
data: setup
	$(PY) tools/dataset_converters/generate_synthetic.py data/synthetic --layout coco

## Side-by-side benchmarks (long; not part of the test suite).
benchmarks: setup
	$(PY) tools/analysis_tools/benchmark_deform_conv.py
	$(PY) tools/analysis_tools/benchmark_upsnet.py
	$(PY) tools/analysis_tools/benchmark_drn.py
	$(PY) tools/analysis_tools/benchmark_segnet.py

## SegNet, DRN-D-22 (+ context) and FCN trained on the real CamVid under one
## CPU budget (~10 min on 2 quiet cores; data: ../shared/data/CamVid or
## CAMVID=path).
CAMVID ?= ../shared/data/CamVid
benchmark-camvid: setup
	$(PY) tools/analysis_tools/benchmark_camvid.py --data-root $(CAMVID)

clean-demo:
	rm -rf work_dirs/main_job work_dirs/compare_panoptic
