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

.PHONY: venv test demo demo-data motion-data bench clean-demo help

help:
	@echo "make demo   - venv, demo videos, shards, SVFormer training (deepspeed), evaluation report"
	@echo "make test   - venv and the whole test suite"
	@echo "make bench  - every benchmark, results in bench/results/"
	@echo "make motion-data - the motion kind's shards for configs/demo_motion.yaml (the demo uses events)"
	@echo "make clean-demo  - remove the demo and motion data, shards and runs/demo"

# Idempotent: the stamp is named after the requirements' hash, so a second run installs nothing.
$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

# synth $(4) videos per class of kind $(1) into $(2); split off the fraction $(5) of each class for
# validation, then 10% of the rest keep labels; prep the three lists into $(3)
define make_data
	$(PY) cli.py synth --kind $(1) --out $(2) --videos-per-class $(4)
	$(PY) cli.py split --list $(2)/all.txt --labeled 0.1 --val $(5) --seed 0 --out $(2)/lists
	for part in labeled unlabeled val; do \
	  $(PY) cli.py prep --list $(2)/lists/$$part.txt --data-root $(2) --num-classes 8 \
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

clean-demo:
	rm -rf $(DEMO) $(DEMO_SHARDS) runs/demo $(MOTION) $(MOTION_SHARDS)
