# Tally: `make demo` runs the whole stack locally, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export PYTHONUNBUFFERED := 1

# PostgreSQL and Redis the tests run against (this machine's defaults; override as needed).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tally
TEST_REDIS_URL ?= redis://127.0.0.1:6379/5
# Extra pytest options (e.g. PYTEST_ARGS="-x -k ledger"). Failed tests are not rerun: a test
# that needs a retry to pass has a bug worth finding.
PYTEST_ARGS ?=

.PHONY: install demo test test-faults lint bench bench-import clean services

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

services:  ## make sure PostgreSQL and Redis answer (starts them on this machine kind if down)
	@bash scripts/ensure_services.sh

demo: install  ## SQLite, a demo project, generated logins, web server + Celery worker
	@bash scripts/demo.sh

test: install services  ## the whole suite: unit, integration (Postgres, Redis, Celery), browser
	$(PY) manage.py makemigrations --check --dry-run --settings=config.settings.test
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest -m "not faults" $(PYTEST_ARGS)

test-faults: install services  ## fault-injection tests (worker kills, Redis restarts)
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest -m faults $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install services bench-import bench-training bench-ledger bench-labor-report bench-pool-write  ## all benchmarks but the peers' and the scale run; see BENCHMARKS.md
	@echo "Benchmarks done: BENCHMARKS-*.md and bench-results/ hold the figures; BENCHMARKS.md sums them up."

# Drops and recreates the database of BENCH_DATABASE_URL (its name must contain "bench").
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tally_bench_import
bench-import: services  ## 100,000 rows of SST-2 into PostgreSQL and SQLite -> BENCHMARKS-import.md (size: BENCH_IMPORT_ARGS="--rows 1000000 --no-tracemalloc --backends postgres")
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) bench/import_bench.py $(BENCH_IMPORT_ARGS)

.PHONY: bench-peers
bench-peers: install services  ## Tally vs Label Studio side by side (about 15 min); BENCHMARKS-peers.md
	@bash scripts/bench_peers.sh $(BENCH_PEERS_ARGS)

clean:
	rm -rf $(VENV) staticfiles var tally.sqlite3 bench-results

.PHONY: bench-ledger
bench-ledger: install services  ## ledger: submissions with the ledger, verify/settle/report on 100,000 entries (PostgreSQL)
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) bench/ledger_bench.py

.PHONY: bench-hot-path
# In a throwaway test database (test_<name of BENCH_HOT_DATABASE_URL>), created and dropped; about 20 s.
BENCH_HOT_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tally_bench_hot
BENCH_HOT_ARGS ?= --rounds 60 --warmup 10
bench-hot-path: install services  ## claim, heartbeat, submit in-process: SQL statements and ms, statement by statement (PostgreSQL)
	DATABASE_URL=$(BENCH_HOT_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) bench/hot_path_bench.py $(BENCH_HOT_ARGS)

.PHONY: bench-ledger-verify
VERIFY_ENTRIES ?= 1000000
VERIFY_JOBS ?= 2
bench-ledger-verify: install services  ## ledger verification speed: VERIFY_ENTRIES (1,000,000) v3 entries, full, --jobs, incremental (PostgreSQL)
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) bench/ledger_verify_bench.py --entries $(VERIFY_ENTRIES) --jobs $(VERIFY_JOBS)

.PHONY: bench-training
bench-training: install services  ## training benchmarks (freshness, label efficiency, embedding speed) -> BENCHMARKS-training.md
	TALLY_DATASETS_DIR=$${TALLY_DATASETS_DIR:-../shared/datasets} $(PY) bench/training_bench.py $(BENCH_ARGS)

.PHONY: bench-first-version
bench-first-version: install services  ## a cold pool of 6,000 long texts: minimum labels -> first version (real stack) -> BENCHMARKS-training.md
	TALLY_DATASETS_DIR=$${TALLY_DATASETS_DIR:-../shared/datasets} REDIS_URL=$(TEST_REDIS_URL) $(PY) bench/first_version_bench.py $(BENCH_ARGS)

.PHONY: bench-embedding
bench-embedding: install  ## encoder texts/s vs a plain torch loop, short and long texts -> BENCHMARKS-training.md
	TALLY_DATASETS_DIR=$${TALLY_DATASETS_DIR:-../shared/datasets} $(PY) bench/embedding_bench.py $(BENCH_ARGS)

.PHONY: bench-load
bench-load: install services  ## 50 simulated annotators for 2 minutes (gunicorn + PostgreSQL + worker) -> BENCHMARKS-load.md
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) TALLY_LOAD_REPORT=BENCHMARKS-load.md \
		$(PY) -m pytest tests/reliability/test_load.py -m faults -s $(PYTEST_ARGS)

.PHONY: bench-labor-report
# Drops and recreates the database of BENCH_LABOR_DATABASE_URL (its name must contain "bench"); about 15 min.
BENCH_LABOR_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tally_bench_labor_report
bench-labor-report: install services  ## labor per model version, 1,000,000 annotations x 50 versions -> BENCHMARKS-labor-report.md
	BENCH_DATABASE_URL=$(BENCH_LABOR_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) bench/labor_report_bench.py $(BENCH_LABOR_ARGS)

.PHONY: bench-pool-write
# Drops and recreates the database of BENCH_POOL_DATABASE_URL (its name must contain "bench"). Size: BENCH_POOL_ARGS="--examples 1000000".
BENCH_POOL_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tally_bench_pool_write
bench-pool-write: install services  ## a training run's writes after scoring the whole pool (positions, predictions), 100,000 examples -> BENCHMARKS-pool-write.md
	BENCH_DATABASE_URL=$(BENCH_POOL_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) bench/pool_write_bench.py $(BENCH_POOL_ARGS)

.PHONY: bench-scale
# Drops and recreates the databases of BENCH_SCALE_DATABASE_URL and BENCH_LABOR_DATABASE_URL (names must contain
# "bench"); about 35 min on 2 cores, 12 GB of disk at the peak.
BENCH_SCALE_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tally_bench_scale
bench-scale: install services  ## 1,000,000 examples (import, hand-outs, lists, scoring) + bench-labor-report -> BENCHMARKS-scale.md
	BENCH_DATABASE_URL=$(BENCH_SCALE_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
		TALLY_DATASETS_DIR=$${TALLY_DATASETS_DIR:-../shared/datasets} $(PY) bench/scale_bench.py $(BENCH_SCALE_ARGS)
	$(MAKE) bench-labor-report

.PHONY: bench-agreement
# Drops and recreates the database of BENCH_AGREEMENT_DATABASE_URL (its name must contain "bench").
BENCH_AGREEMENT_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tally_bench_agreement
BENCH_AGREEMENT_ARGS ?=
bench-agreement: install services  ## agreement + Dawid-Skene on 1,000,000 generated annotations, DB read path on 100,000 -> BENCHMARKS-agreement.md
	BENCH_DATABASE_URL=$(BENCH_AGREEMENT_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) bench/agreement_bench.py $(BENCH_AGREEMENT_ARGS)
