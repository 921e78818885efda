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

.PHONY: help test book reproduce reproduce-params clean
.DEFAULT_GOAL := help

help:
	@echo "make test                   unit tests, every chapter at smoke budget, a smoke build of the book (what CI runs)"
	@echo "make book                   the book from book/params.yaml -> _build/html/index.html (stored runs are reused)"
	@echo "make reproduce BUDGET=full DATASET=cifar100 [DEVICE=cuda]   the book with other parameters"
	@echo "make clean                  build outputs only (results/ and .venv/ stay)"
	@echo "(the first of test / book / reproduce creates .venv/, about 4 minutes)"

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

# the same build with other parameters, e.g. make reproduce BUDGET=full DATASET=cifar100; a typo is
# one line and exit 2 before anything installs or runs (the build first clears the last one's chapters)
reproduce: reproduce-params $(INSTALLED)
	PYTHON=$(PYTHON) scripts/build_book.sh -f $(PARAMS) $(OVERRIDES)

reproduce-params:
	@[ -n "$(BUDGET)$(DATASET)$(DEVICE)" ] || { echo "usage: make reproduce BUDGET=smoke|short|full DATASET=cifar100|cifar10-jpg|synthetic [DEVICE=cpu|cuda|auto]" >&2; exit 2; }
	@case "$(BUDGET)" in ""|smoke|short|full) ;; *) echo "error: BUDGET=$(BUDGET) is not allowed; choose smoke, short or full" >&2; exit 2 ;; esac
	@case "$(DATASET)" in ""|cifar100|cifar10-jpg|synthetic) ;; *) echo "error: DATASET=$(DATASET) is not allowed; choose cifar100, cifar10-jpg or synthetic" >&2; exit 2 ;; esac
	@[[ "$(DEVICE)" =~ ^(|auto|cpu|cuda(:[0-9]+)?)$$ ]] || { echo "error: DEVICE=$(DEVICE) is not allowed; choose auto, cpu, cuda or cuda:N" >&2; exit 2; }

# build outputs only: results/ (trained runs) and the venv stay
clean:
	rm -rf _build book/executed book/figures
	rm -f notebooks/*.ipynb
