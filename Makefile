# birr: `make test`, `make book`, `make reproduce BUDGET=... DATASET=...`, `make chapter NAME=...`, `make clean`.
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

# make reproduce / make chapter: each one that is set overrides book/params.yaml
BUDGET ?=
DATASET ?=
DEVICE ?=
SEEDS ?=
# SEEDS="0 1" (or "0,1", "[0, 1]") -> -y "seeds: [0, 1]": a YAML list, so the chapters get a list (`-p` would give a string)
comma := ,
empty :=
space := $(empty) $(empty)
SEEDS_LIST := $(subst $(space),$(comma)$(space),$(strip $(subst $(comma),$(space),$(subst [,,$(subst ],,$(SEEDS))))))
OVERRIDES := $(if $(BUDGET),-p budget $(BUDGET)) $(if $(DATASET),-p dataset $(DATASET)) $(if $(DEVICE),-p device $(DEVICE)) \
	$(if $(SEEDS),-y "seeds: [$(SEEDS_LIST)]")
# make chapter NAME=06_table1: one chapter, executed into _build/rerun/NAME.ipynb (scripts/build_book.sh --chapter)
NAME ?=
CHAPTERS := $(basename $(notdir $(wildcard notebooks/[0-9][0-9]_*.py)))
CHAPTER := $(basename $(notdir $(NAME)))

# a relative BIRR_RESULTS / BIRR_CACHE names a folder under the directory make runs in, for the chapters
# (which papermill runs in notebooks/) as for `python -m birr` run from here
ifneq ($(strip $(BIRR_RESULTS)),)
override BIRR_RESULTS := $(abspath $(BIRR_RESULTS))
export BIRR_RESULTS
endif
ifneq ($(strip $(BIRR_CACHE)),)
override BIRR_CACHE := $(abspath $(BIRR_CACHE))
export BIRR_CACHE
endif

.PHONY: help test book reproduce reproduce-params chapter chapter-params clean
.DEFAULT_GOAL := help

help:
	@echo "make test                   unit tests, every chapter at smoke budget, a smoke build of the book (what CI runs)"
	@echo "make book                   the book from book/params.yaml -> _build/html/index.html (stored runs are reused)"
	@echo "make reproduce BUDGET=full DATASET=cifar100 [DEVICE=cuda] [SEEDS=\"0 1 2\"]   the book with other parameters"
	@echo "make chapter NAME=06_table1 [BUDGET=smoke] [DATASET=synthetic] [SEEDS=\"0 1\"] [DEVICE=cpu]"
	@echo "                            one chapter -> _build/rerun/NAME.ipynb, runs in _build/rerun/results"
	@echo "                            (unless BIRR_RESULTS is set); the rest from book/params.yaml, the book untouched"
	@echo "make chapter NAME=13_lab BUDGET=class   the lab chapter as a class runs it (a few minutes on a CPU)"
	@echo "make clean                  build outputs only (results/ and .venv/ stay)"
	@echo "(the first of test / book / reproduce / chapter creates .venv/, about 4 minutes)"

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
	@[ -n "$(BUDGET)$(DATASET)$(DEVICE)$(SEEDS)" ] || { echo "usage: make reproduce BUDGET=smoke|class|short|full DATASET=cifar100|cifar10-jpg|synthetic [DEVICE=cpu|cuda|auto] [SEEDS=\"0 1 2\"]" >&2; exit 2; }
	$(check-params)

# one chapter with the book's parameters, or others: a typo (NAME included) is one line and exit 2 before
# anything installs or runs; build_book.sh checks the values the chapter gets (birr.params.check) too
chapter: chapter-params $(INSTALLED)
	PYTHON=$(PYTHON) scripts/build_book.sh --chapter $(CHAPTER) -f $(PARAMS) $(OVERRIDES)

chapter-params:
	@[ -n "$(NAME)" ] || { echo "usage: make chapter NAME=<one of: $(CHAPTERS)> [BUDGET=...] [DATASET=...] [SEEDS=\"0 1\"] [DEVICE=...]" >&2; exit 2; }
	@[ -f "notebooks/$(CHAPTER).py" ] || { echo "error: there is no chapter NAME=$(NAME); choose one of $(CHAPTERS)" >&2; exit 2; }
	$(check-params)

define check-params
	@case "$(BUDGET)" in ""|smoke|class|short|full) ;; *) echo "error: BUDGET=$(BUDGET) is not allowed; choose smoke, class, short or full" >&2; exit 2 ;; esac
	@case "$(DATASET)" in ""|cifar100|cifar10-jpg|synthetic) ;; *) echo "error: DATASET=$(DATASET) is not allowed; choose cifar100, cifar10-jpg or synthetic" >&2; exit 2 ;; esac
	@[[ "$(DEVICE)" =~ ^(|auto|cpu|cuda(:[0-9]+)?)$$ ]] || { echo "error: DEVICE=$(DEVICE) is not allowed; choose auto, cpu, cuda or cuda:N" >&2; exit 2; }
	@[[ "$(SEEDS)" =~ ^[][0-9\ ,]*$$ ]] || { echo "error: SEEDS=$(SEEDS) is not allowed; give ints >= 0, e.g. SEEDS=\"0 1 2\"" >&2; exit 2; }
endef

# build outputs only: results/ (trained runs) and the venv stay
clean:
	rm -rf _build book/executed book/figures
	rm -f notebooks/*.ipynb
