# KillKrill developer entry points. `make run` runs the main job, `make test` the tests;
# both work on a fresh Debian 12 machine (as root they install what is missing).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KK := $(BIN)/killkrill
# Real peers the integration tests drive: syslog clients/servers, a Prometheus server, and
# nginx as a TLS + auth front of Elasticsearch (the dev Elasticsearch runs without security).
# The bench adds rsyslog's Elasticsearch output, wrk, redis-benchmark and the libraries of
# syslog-ng, which it runs unpacked from its .debs (syslog-ng-core conflicts with rsyslog).
PEER_PACKAGES := bsdutils rsyslog rsyslog-gnutls prometheus openssl nginx \
  rsyslog-elasticsearch wrk redis-tools libivykis0 libnet1 libjson-c5 libcurl4 libpcre3 libwrap0
# `make bench SCENARIOS=e2e BENCH_ARGS=--quick`: which scenarios (default all), extra options.
SCENARIOS ?=
BENCH_ARGS ?=
SERVICES_ENV = eval "$$($(KK) dev services env)"
PYTEST_ARGS ?=
# The coverage floor holds for the whole suite; a subset (PYTEST_ARGS) reports coverage only.
COV_FAIL_UNDER ?= $(if $(strip $(PYTEST_ARGS)),0,75)

.PHONY: install install-bench peers bench-peers bench services services-down k8s k8s-down image kind kind-down crds run up lint test unit e2e clean

install: $(VENV)/.installed ## Create .venv with the package and its dev extras

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

peers: ## Install the real protocol peers the tests use (Debian packages), when missing
	@missing=""; \
	command -v logger >/dev/null || missing="$$missing bsdutils"; \
	command -v rsyslogd >/dev/null || test -x /usr/sbin/rsyslogd || missing="$$missing rsyslog"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || missing="$$missing nginx"; \
	ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 || missing="$$missing rsyslog-gnutls"; \
	ls /usr/lib/*/rsyslog/omelasticsearch.so >/dev/null 2>&1 || missing="$$missing rsyslog-elasticsearch"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v redis-benchmark >/dev/null || missing="$$missing redis-tools"; \
	for lib in libivykis0 libnet1 libjson-c5 libcurl4 libpcre3 libwrap0; do \
	  dpkg-query -W -f='$${Status}' $$lib 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$lib"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing:$$missing (apt-get install$$missing)"; exit 1; fi; \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends $$missing >/dev/null \
	    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null; }; \
	fi

bench-peers: install peers ## syslog-ng for the bench, unpacked from its .debs (cached); checks the other tools
	$(KK) bench --prepare

install-bench: $(VENV)/.installed-bench ## The bench's extra (matplotlib for the charts)

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $@

bench: install-bench bench-peers ## Benchmarks: `make bench [SCENARIOS="e2e http"] [BENCH_ARGS="--quick|--rounds N"]` (see bench/README.md)
	$(KK) bench $(SCENARIOS) $(BENCH_ARGS)

services: install ## Start real Redis, PostgreSQL and Elasticsearch on loopback (idempotent)
	$(KK) dev services up  # prints the start-up wall time

services-down: install ## Stop the local services
	$(KK) dev services down

image: install ## The container image on the project's Docker engine (started when not running)
	$(KK) dev docker up
	$(KK) dev docker image  # local Debian bases (cached by recipe), then the image; prints size and time

k8s: install ## Local Kubernetes control plane + kubectl, helm, kind, skaffold (built from source once, cached)
	$(KK) dev k8s up --all  # prints what it builds, how long each took, and the ready time

k8s-down: install ## Stop the local Kubernetes control plane
	$(KK) dev k8s down

kind: install image ## A kind cluster (pods run) from the node image built here; both cached
	$(KK) dev kind image  # node binaries from source, Debian bases, kubeadm's images preloaded
	$(KK) dev kind up     # one node, Ready, CoreDNS running; kubeconfig: `killkrill dev kind env`

kind-down: install ## Delete the kind cluster (no container is left)
	$(KK) dev kind down

run: services ## The main job: start the services, run the pipeline end to end on sample data
	$(SERVICES_ENV); $(KK) dev smoke

up: services ## The pipeline in the foreground (receivers :8080, syslog :5140) until Ctrl-C
	$(SERVICES_ENV); $(KK) up

CHART := charts/killkrill

crds: install ## Write the Pipeline CRD (crds/ and the chart's copy) and the chart's values schema $$defs from the model (tests compare them)
	$(BIN)/python -m killkrill.config.crd crds/pipelines.killkrill.io.yaml $(CHART)/files/crds/pipelines.killkrill.io.yaml
	cp crds/kopf-peering.yaml $(CHART)/crds/kopf-peering.yaml
	$(BIN)/python -m killkrill.config.chart $(CHART)/values.schema.json

lint: install ## ruff (lint + format check), mypy --strict, import layering
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: install ## Unit tests only (no services needed)
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

test: install peers bench-peers services k8s lint image ## Everything: lint, the image, unit + integration tests with coverage
	$(SERVICES_ENV); \
	$(BIN)/pytest -p random_order --random-order -m 'not e2e' --durations=15 \
	  --cov=killkrill --cov-report=term --cov-fail-under=$(COV_FAIL_UNDER) $(PYTEST_ARGS)

# The image the e2e tests run, built from this tree under a tag of its own: `make image` of
# another worktree on the same engine moves killkrill/killkrill:dev.
E2E_IMAGE ?= killkrill/killkrill:e2e

e2e: kind ## End-to-end tests in the kind cluster (tests/e2e; not part of `make test`)
	$(KK) dev docker image --tag $(E2E_IMAGE)
	KILLKRILL_E2E_IMAGE=$(E2E_IMAGE) $(BIN)/pytest -m e2e tests/e2e $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
