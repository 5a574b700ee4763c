# bgedit: every README command goes through here.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: setup test test-all demo demo-train bench lint clean

setup: $(STAMP)

# torch/torchvision first, pinned: on these machines pip takes both from local disk.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24" "setuptools>=77.0.3,<82" wheel
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q -n 2

test-all: setup
	$(BIN)/python -m pytest -q -m "" -n 2

# The shipped demo bundle (models/demo) on held-out scenes; installs it as the default bundle unless one exists.
# FORCE=1 replaces an existing default bundle; DEMO_ARGS="--update-docs" refreshes the pictures in docs/demo/.
demo: setup
	$(if $(FORCE),DEMO_FORCE_INSTALL=1 )$(BIN)/python scripts/demo.py $(DEMO_ARGS)

# The demo bundle from nothing, stage by stage, as recipes/demo.toml lists it (hours on a CPU); run it again to
# continue where it stopped. DEMO_TRAIN_WORK=DIR moves the data and bundle; DEMO_TRAIN_ARGS="--only text
# --time-limit 60" (any `bgedit train all` options) is passed on.
DEMO_TRAIN_WORK ?= $(HOME)/.cache/bgedit/demo-train
demo-train: setup
	$(BIN)/bgedit train all --recipe recipes/demo.toml --data $(DEMO_TRAIN_WORK)/data \
		--model $(DEMO_TRAIN_WORK)/bundle $(DEMO_TRAIN_ARGS)

bench: setup
	$(BIN)/python scripts/bench.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
