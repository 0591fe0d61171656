# svformer: `make demo` and `make test` work on a fresh machine (they build .venv first).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)
DEMO := data/demo
DEMO_SHARDS := shards/demo
MOTION := data/motion
MOTION_SHARDS := shards/motion
NPROC ?= 2
# one BLAS/OpenMP thread per process: the launcher runs NPROC processes on few cores
export OMP_NUM_THREADS ?= 1

.PHONY: venv test demo demo-data motion-data pretrain-data bench bench-pretrain clean-demo help gpu-wheels gpu-check

help:
	@echo "make demo   - venv, demo videos, shards, SVFormer training (deepspeed), evaluation report"
	@echo "make test   - venv and the whole test suite"
	@echo "make bench  - every benchmark, results in bench/results/"
	@echo "make motion-data - the motion kind's shards for configs/demo_motion.yaml (the demo uses events)"
	@echo "make pretrain-data  - 1000 synthetic pretraining videos (synth --kind pretrain) -> shards/pretrain_synth"
	@echo "make bench-pretrain - masked-video pretraining curve on the motion kind (~1 h, not part of make bench)"
	@echo "make clean-demo  - remove the demo and motion data, shards and runs/demo"
	@echo "make gpu-wheels  - here: .whl/, the wheels the GPU image lacks (then carry .whl and shards/demo)"
	@echo "make gpu-check   - on a GPU machine (or a CPU dry run): tests, benches, training; bench/results/gpu.json"

# Idempotent: the stamp is named after the requirements' hash, so a second run installs nothing.
$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

# lint and format check first (seconds), then the suite
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q tests

# synth $(4) videos per class of kind $(1) into $(2); split off the fraction $(5) of each class for
# validation, then 10% of the rest keep labels; prep the three lists into $(3)
define make_data
	$(PY) cli.py synth --kind $(1) --out $(2) --videos-per-class $(4)
	$(PY) cli.py split --list $(2)/all.txt --labeled 0.1 --val $(5) --seed 0 --out $(2)/lists
	for part in labeled unlabeled val; do \
	  $(PY) cli.py prep --list $(2)/lists/$$part.txt --data-root $(2) --num-classes 8 --classes $(2)/classes.txt \
	    --short-side 64 --fps 15 --workers $(NPROC) --out $(3)/$$part || exit 1; \
	done
endef

# the demo: 512 events videos -> 24 labeled, 232 unlabeled, 256 val (configs/demo.yaml)
demo-data: $(STAMP)
	$(call make_data,events,$(DEMO),$(DEMO_SHARDS),64,0.5)

# the motion kind, which a tiny ViT does not learn here: 24 labeled, 232 unlabeled, 64 val (configs/demo_motion.yaml)
motion-data: $(STAMP)
	$(call make_data,motion,$(MOTION),$(MOTION_SHARDS),40,0.2)

demo: demo-data
	$(VENV)/bin/deepspeed --num_gpus $(NPROC) cli.py train --config configs/demo.yaml
	$(PY) cli.py eval --ckpt runs/demo --model both

bench: demo-data
	$(PY) cli.py bench all

# synthetic pretraining videos (moving/accelerating/transforming shapes, textures; no labels)
pretrain-data: $(STAMP)
	$(PY) cli.py synth --kind pretrain --out data/pretrain_synth --videos 1000
	$(PY) cli.py prep --list data/pretrain_synth/all.txt --data-root data/pretrain_synth --short-side 64 --fps 15 \
	  --workers $(NPROC) --out shards/pretrain_synth

bench-pretrain: $(STAMP)
	$(PY) bench/pretrain.py

clean-demo:
	rm -rf $(DEMO) $(DEMO_SHARDS) runs/demo $(MOTION) $(MOTION_SHARDS)

# The GPU check (README "GPU"). gpu-wheels runs here, where PyPI answers: CPython 3.12 manylinux wheels of
# what the GPU image lacks, into .whl/ (at most 64 MiB; never torch). gpu-check runs on the GPU machine with
# its own python3 (no .venv there; the carried wheels go to /tmp/site), or here as a CPU dry run.
gpu-wheels: $(STAMP)
	$(PY) bench/gpu_check.py --fetch-wheels

gpu-check:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) bench/gpu_check.py $(GPU_CHECK_ARGS)
