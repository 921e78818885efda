# birr: `make test`, `make book`, `make reproduce BUDGET=... DATASET=...`, `make clean`.
# The first two create the virtual environment in $(VENV) when it is missing (about 4 minutes), once.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:

VENV ?= .venv
PYTHON := $(VENV)/bin/python
# stamped after a successful install; the install is redone when pyproject.toml changes
INSTALLED := $(VENV)/.installed
# papermill parameters of the book build
PARAMS ?= book/params.yaml

# make reproduce: each one that is set overrides book/params.yaml
BUDGET ?=
DATASET ?=
DEVICE ?=
OVERRIDES := $(if $(BUDGET),-p budget $(BUDGET)) $(if $(DATASET),-p dataset $(DATASET)) $(if $(DEVICE),-p device $(DEVICE))

.PHONY: test book reproduce clean

$(INSTALLED): pyproject.toml
	[ -x $(PYTHON) ] || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --upgrade pip
	$(PYTHON) -m pip install -e ".[dev]"
	touch $@

# unit tests, every chapter at smoke budget on synthetic data, and a smoke build of the whole book
test: $(INSTALLED)
	$(PYTHON) -m pytest -q

# every notebooks/NN_*.py -> papermill (parameters from $(PARAMS)) -> book/executed/ -> _build/html
book: $(INSTALLED)
	PYTHON=$(PYTHON) scripts/build_book.sh -f $(PARAMS)

# the same build with other parameters, e.g. make reproduce BUDGET=full DATASET=cifar100
reproduce: $(INSTALLED)
	@[ -n "$(BUDGET)$(DATASET)$(DEVICE)" ] || { echo "usage: make reproduce BUDGET=smoke|short|full DATASET=cifar100|cifar10-jpg|synthetic [DEVICE=cpu|cuda|auto]" >&2; exit 2; }
	PYTHON=$(PYTHON) scripts/build_book.sh -f $(PARAMS) $(OVERRIDES)

# build outputs only: results/ (trained runs) and the venv stay
clean:
	rm -rf _build book/executed book/figures
	rm -f notebooks/*.ipynb
