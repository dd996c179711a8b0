# Sluice developer commands. Every target bootstraps what it needs and is safe to run twice.
SHELL := /bin/bash
.DEFAULT_GOAL := venv

VENV := .venv
TOOLS := .tools
PY := $(VENV)/bin/python
# A stamp is newer than the lock file its environment was installed from: a changed lock reinstalls.
VENV_STAMP := $(VENV)/.installed
TOOLS_STAMP := $(TOOLS)/.installed
# checkov pins boto3 and others exactly, against the SAM CLI's pins: a virtualenv of its own, inside .tools.
CHECKOV := $(TOOLS)/checkov
CHECKOV_STAMP := $(CHECKOV)/.installed

export SLUICE_DB_DSN ?= postgresql://postgres@127.0.0.1:5433/sluice
# The moto server's port: infra/moto.sh (make moto, make run) and the benches that talk to it.
export MOTO_PORT ?= 4566
# SAM CLI needs a region even to validate; it never talks to AWS here.
SAM := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-eu-central-1} $(TOOLS)/bin/sam

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# A venv of another Python (or a broken one) is replaced rather than patched.
define make_venv
	@python=$$(bash infra/find-python.sh) || exit 1; \
	if ! $(1)/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then \
		rm -rf $(1) && $$python -m venv $(1); \
	fi
endef

$(VENV_STAMP): requirements/dev.lock pyproject.toml
	$(call make_venv,$(VENV))
	$(PY) -m pip install -q --require-hashes -r requirements/dev.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

$(TOOLS_STAMP): requirements/tools.lock
	$(call make_venv,$(TOOLS))
	$(TOOLS)/bin/python -m pip install -q --require-hashes -r requirements/tools.lock
	@touch $@

# After .tools (order only): a .tools replaced for another Python takes this virtualenv and its stamp with it.
$(CHECKOV_STAMP): requirements/checkov.lock | $(TOOLS_STAMP)
	$(call make_venv,$(CHECKOV))
	$(CHECKOV)/bin/python -m pip install -q --require-hashes -r requirements/checkov.lock
	@touch $@

.PHONY: venv tools
venv: $(VENV_STAMP) ## create .venv (Python 3.13) with the locked dependencies
tools: $(TOOLS_STAMP) $(CHECKOV_STAMP) ## create .tools with aws-sam-cli and cfn-lint, and checkov in .tools/checkov

.PHONY: db db-stop db-status migrate
db: ## install TimescaleDB if missing, start the local cluster on 127.0.0.1:5433 (unless SLUICE_DB_DSN names another server)
	@bash infra/db.sh ensure
db-stop: ## stop the local cluster
	@bash infra/db.sh stop
db-status: ## say whether the local cluster runs
	@bash infra/db.sh status
migrate: $(VENV_STAMP) db ## apply the schema migrations to $SLUICE_DB_DSN
	@$(VENV)/bin/sluice-migrate up

# The browser tests (tests/browser) drive Debian's Chromium through its WebDriver; nothing is downloaded at run time.
.PHONY: browser
browser: ## install Debian's chromium and chromium-driver if missing (the browser tests drive them)
	@bash infra/install-chromium.sh

.PHONY: moto moto-stop
moto: $(VENV_STAMP) ## start the moto server (S3, SQS, DynamoDB, Secrets Manager) on 127.0.0.1:4566
	@bash infra/moto.sh start
moto-stop: ## stop the moto server
	@bash infra/moto.sh stop

.PHONY: lint
lint: $(VENV_STAMP) $(TOOLS_STAMP) $(CHECKOV_STAMP) ## ruff, mypy, the OpenAPI spec and the template checks (checkov included)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/bandit -q -c pyproject.toml -r layers functions
	$(PY) -m openapi_spec_validator docs/openapi.yaml
	$(TOOLS)/bin/cfn-lint template.yaml
	$(SAM) validate --template template.yaml
	$(SAM) validate --lint --template template.yaml
	@# Every finding is fixed or skipped in its resource's Metadata with a reason; a new one fails the lint.
	@# --skip-download: checkov would otherwise fetch guideline links from its vendor on every run.
	$(CHECKOV)/bin/checkov --quiet --compact --skip-download --framework cloudformation --file template.yaml

.PHONY: test
test: $(VENV_STAMP) migrate browser ## run the tests against the local TimescaleDB (started if needed) and Chromium, coverage gate included
	$(VENV)/bin/pytest --ignore=tests/reliability $(PYTEST_ARGS)

.PHONY: screenshots
screenshots: $(VENV_STAMP) migrate browser ## a PNG of each console page under docs/console/ (a stack of its own, sample data, headless Chromium)
	$(PY) -m tests.browser.screenshots

# The unit tests need no database nor moto; the coverage gate (pyproject.toml) is make test's, on the whole suite.
.PHONY: test-unit
test-unit: $(VENV_STAMP) ## run the unit tests only (no database, no coverage gate)
	$(VENV)/bin/pytest --no-cov tests/unit $(PYTEST_ARGS)

# The fault scenarios kill and stop a cluster of their own (5434, .local/pg-faults); every suite starts its own stack
# on free ports. SLUICE_LOAD_SECONDS sets the load run's length (default 180).
RELIABILITY := tests/reliability tests/e2e/test_hostile_input.py tests/e2e/test_access_matrix.py
.PHONY: reliability
reliability: $(VENV_STAMP) migrate ## fault scenarios, hostile input, access matrix, schemathesis, stateful and load runs, each checked by the oracle; prints the figures
	@status=0; $(VENV)/bin/pytest --no-cov -p no:cacheprovider $(RELIABILITY) $(PYTEST_ARGS) || status=$$?; \
	$(PY) -m tests.reliability.report; exit $$status

# sam build runs pip on the layer's requirements.txt twice: `pip download -r` for the build host (hash-checked),
# then, for packages with compiled code, `pip download pkg==version --platform ...aarch64` without the hashes.
# So every wheel is first fetched and checked against the hashes into LAYER_WHEELS, for this host and for arm64,
# and sam build's pip takes them from there only (no index).
LAYER_REQUIREMENTS := layers/sluice/requirements.txt
LAYER_WHEELS := .local/layer-wheels
LAMBDA_PLATFORMS := --only-binary=:all: --python-version 3.13 --implementation cp \
	--platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64

.PHONY: build
build: $(TOOLS_STAMP) ## sam build (no container): the layer (hash-checked arm64 wheels) and functions under .aws-sam/build
	rm -rf $(LAYER_WHEELS)
	$(TOOLS)/bin/python -m pip download -q --require-hashes -r $(LAYER_REQUIREMENTS) -d $(LAYER_WHEELS)
	$(TOOLS)/bin/python -m pip download -q --require-hashes $(LAMBDA_PLATFORMS) -r $(LAYER_REQUIREMENTS) -d $(LAYER_WHEELS)
	@# SAM looks for python3.13 on PATH; put the one the venvs use first.
	PIP_NO_INDEX=1 PIP_FIND_LINKS="$(abspath $(LAYER_WHEELS))" PATH="$$(dirname "$$(bash infra/find-python.sh)"):$$PATH" \
		$(SAM) build --template template.yaml

# The benches print their tables only on stdout (the handlers' metrics, EMF documents in Lambda, are kept out).
# Each works in scratch databases it migrates itself: it needs the cluster, not `make migrate` (whose report would
# go to stdout too).
.PHONY: bench
bench: $(VENV_STAMP) db moto browser ## measure rules, index COPY price, the ingest handler, the worker, reviews, the readings API, the console's first load, alert evaluation and webhook latency, as ratios within one run
	@$(PY) -m tests.bench.bench_validation
	@$(PY) -m tests.bench.bench_indexes
	@$(PY) -m tests.bench.bench_ingest
	@$(PY) -m tests.bench.bench_worker
	@$(PY) -m tests.bench.bench_grafana
	@$(PY) -m tests.bench.bench_review
	@$(PY) -m tests.bench.bench_quarantine_filters
	@$(PY) -m tests.bench.bench_readings
	@$(PY) -m tests.bench.bench_console
	@$(PY) -m tests.bench.bench_twin
	@$(PY) -m tests.bench.bench_alerts
	@$(PY) -m tests.bench.bench_webhooks

.PHONY: run
run: $(VENV_STAMP) ## start the whole pipeline locally (database, moto, HTTP API twin on :3000, queue poller, schedules) until Ctrl-C
	@bash infra/run.sh

.PHONY: lock
lock: $(VENV_STAMP) ## regenerate the lock files from pyproject.toml and requirements/*.in
	$(VENV)/bin/uv pip compile -q --python-version 3.13 --generate-hashes --extra dev pyproject.toml -o requirements/dev.lock
	$(VENV)/bin/uv pip compile -q --python-version 3.13 --generate-hashes requirements/tools.in -o requirements/tools.lock
	$(VENV)/bin/uv pip compile -q --python-version 3.13 --generate-hashes requirements/checkov.in -o requirements/checkov.lock
	@# The layer: the runtime dependencies for Lambda's arm64, hashed, at the versions the tests ran with (dev.lock).
	$(VENV)/bin/uv pip compile -q --python-version 3.13 --python-platform aarch64-manylinux_2_28 --generate-hashes \
		-c requirements/dev.lock pyproject.toml -o $(LAYER_REQUIREMENTS)

.PHONY: clean
clean: ## stop local services and remove every generated file (.venv, .tools, .local, caches)
	-@bash infra/moto.sh stop 2>/dev/null
	-@bash infra/db.sh stop 2>/dev/null
	-@SLUICE_DB_HOME=.local/pg-faults bash infra/db.sh stop 2>/dev/null
	@# A cluster's data may live outside the checkout (see infra/db.sh); remove it there too.
	@for link in .local/pg .local/pg-faults; do [ ! -L $$link ] || rm -rf "$$(readlink -f $$link)"; done
	rm -rf $(VENV) $(TOOLS) .local .aws-sam .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
