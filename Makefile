# novaha.recovery developer entry points. `make test` is what CI runs (.ci/run).
# Every target installs on first use what it needs (`install` is a no-op when up to date).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
# The targets share one local cloud and one set of virtualenvs: never run them in parallel.
.NOTPARALLEL:

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
DEV := $(ROOT)/.venv/dev/bin
CLOUD := PYTHONPATH=$(ROOT)/tests/localcloud $(ROOT)/.venv/cloud/bin/python -m localcloud
# pytest's exit code 5 means "no tests collected": a failure here, and said so.
define pytest
	cd $(ROOT) && $(DEV)/python -m pytest $(1) || { rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make: no tests collected in $(firstword $(1)) (counts as a failure)" >&2; fi; \
	  exit $$rc; }
endef

.PHONY: help install demo test lint sanity unit integration molecule bench bench-full chaos cores \
	localcloud-up localcloud-down localcloud-status localcloud-reset localcloud-check clean distclean

help: ## List the targets (this text)
	@echo "novaha.recovery: make <target>"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## Debian packages (if missing) and .venv/cloud, .venv/dev (if requirements changed)
	@bash $(ROOT)/hack/install.sh

demo: install localcloud-up ## Start the local cloud and run the demo story on it
	bash $(ROOT)/hack/demo.sh

test: install sanity unit lint integration molecule ## What CI runs: sanity, unit, lint, integration, molecule
	@echo "make test: all passed"

sanity: install ## ansible-test sanity (Python 3.11) on a mirror under build/sanity/
	bash $(ROOT)/hack/sanity.sh

unit: install ## Unit tests (tests/unit; no network, no cloud)
	$(call pytest,tests/unit)

# One command per ansible-core: `.venv/dev/bin/nox -s unit-2.16`, `nox -s sanity-2.17`, `nox -s e2e-2.18`, `nox -t core-2.16`.
cores: install ## Unit tests and ansible-test sanity on every supported ansible-core, 2.16 to 2.19 (noxfile.py; long)
	cd $(ROOT) && $(DEV)/nox

lint: install ## reuse, ruff (check, format), mypy, antsibull-changelog, antsibull-docs, ansible-lint
	bash $(ROOT)/hack/lint.sh

# The chaos runs marked chaos_only take long: `make chaos` runs them, with the fast subset that is part of this target.
integration: install ## Integration tests on the local cloud (started and stopped by the fixtures)
	$(call pytest,tests/integration -m "not chaos_only and not tooling_only" --durations=40)

molecule: install ## Molecule scenarios under extensions/molecule/ on the local cloud (none: skipped)
	bash $(ROOT)/hack/molecule.sh

# `make bench BENCH_ARGS=--quick`: a smoke run (N = 10, once) that leaves docs/ alone; `--help` lists the options.
# `make bench BENCH_ARGS="--rack 3x5 --reps 1"`: a small rack (three hosts failed together) on its own cloud.
BENCH_ARGS ?= --docs
bench: install ## Benchmark (not a test) on its own cloud: recover-host.yml vs naive loop, floor, Masakari -> docs/benchmarks.md
	@bash $(ROOT)/hack/install.sh masakari
	cd $(ROOT) && $(DEV)/python tests/bench/run.py $(BENCH_ARGS)

# `make bench-full BENCH_FULL_REPS=3`: three repetitions (three times as long); BENCH_FULL_ARGS= leaves docs/ alone.
BENCH_FULL_REPS ?= 1
BENCH_FULL_ARGS ?= --docs
bench-full: install ## Issue 16's sweep (about 90 min, estimated): rebuilds of 2 s, 20 s, 5-60 s at N = 50 to 200, and a rack of 3 x 30
	BENCH_FULL_REPS=$(BENCH_FULL_REPS) BENCH_FULL_ARGS="$(BENCH_FULL_ARGS)" bash $(ROOT)/hack/bench-full.sh

# `make chaos CHAOS_SEED=7 CHAOS_COUNT=24 CHAOS_FAULT_RUNS=5`: another seeded list of kill points, longer.
# What each run measured: build/chaos/results.jsonl, rendered as docs/reliability.md's tables at the end.
CHAOS_SEED ?= 14
CHAOS_COUNT ?= 18
CHAOS_FAULT_RUNS ?= 3
CHAOS_RESULTS := $(ROOT)/build/chaos/results.jsonl
chaos: install ## Chaos runs (long, not in `make test`): the controller killed in every phase, 10% API faults
	mkdir -p $(dir $(CHAOS_RESULTS)) && rm -f $(CHAOS_RESULTS)
	rc=0; NOVAHA_CHAOS_SEED=$(CHAOS_SEED) NOVAHA_CHAOS_COUNT=$(CHAOS_COUNT) NOVAHA_CHAOS_FAULT_RUNS=$(CHAOS_FAULT_RUNS) \
	  NOVAHA_CHAOS_RESULTS=$(CHAOS_RESULTS) $(MAKE) --no-print-directory chaos-pytest || rc=$$?; \
	  if [ -s $(CHAOS_RESULTS) ]; then $(DEV)/python $(ROOT)/hack/chaos_table.py $(CHAOS_RESULTS); fi; exit $$rc

.PHONY: chaos-pytest
chaos-pytest:
	$(call pytest,tests/integration/test_chaos.py tests/integration/test_recovery_run.py tests/integration/test_api_faults.py -m chaos --durations=0 -p no:warnings)

localcloud-check: install ## Tests of the local cloud's own tooling left out of `make test` (a second cloud up and down)
	$(call pytest,tests/integration/test_localcloud.py -m tooling_only)

localcloud-up: install ## Start the local cloud (state in .localcloud/)
	@if $(CLOUD) status --quiet >/dev/null 2>&1; then echo "local cloud already up"; else $(CLOUD) up; fi

localcloud-down: install ## Stop every process of the local cloud
	$(CLOUD) down

localcloud-status: install ## What of the local cloud runs
	$(CLOUD) status

localcloud-reset: install ## Delete servers, revive hosts, restore service flags
	$(CLOUD) reset

clean: ## Remove build output (build/, tests/output/, caches, artifacts); keeps virtualenvs and the cloud
	rm -rf $(ROOT)/build $(ROOT)/tests/output $(ROOT)/.pytest_cache $(ROOT)/novaha-recovery-*.tar.gz
	find $(ROOT) -path $(ROOT)/.venv -prune -o -path $(ROOT)/.git -prune -o \
	  -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## Also stop the local cloud and remove .venv/, .localcloud/ and its cache
	-if [ -x $(ROOT)/.venv/cloud/bin/python ]; then $(CLOUD) down; fi
	rm -rf $(ROOT)/.venv $(ROOT)/.localcloud $(ROOT)/.localcloud-cache
