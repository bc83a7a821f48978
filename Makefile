# CELAEST Core — the two commands a newcomer needs are `make run` and `make test`.
# Everything else is for day-to-day work. `make help` lists the targets.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Builds never need a database: sqlx reads the committed offline cache in .sqlx/.
export SQLX_OFFLINE ?= true
export DATABASE_URL ?= postgres://postgres:postgres@127.0.0.1:5432/celaest
export REDIS_URL ?= redis://127.0.0.1:6379
CARGO ?= cargo
SQLX_PREPARE_URL ?= postgres://postgres:postgres@127.0.0.1:5432/celaest_sqlx

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: run
run: ## Start PostgreSQL/Redis if needed, migrate, seed, and run central with its workers
	@scripts/run.sh

.PHONY: test
test: ## Start PostgreSQL/Redis if needed and run every test (unit, integration, end-to-end)
	@scripts/test.sh

# The contract check's fixed seed and examples per operation: a run is reproducible, and a change
# to either is a reviewed change here.
.PHONY: contract
contract: ## Start central and check it against its OpenAPI document with schemathesis (every operation)
	@scripts/contract.sh --seed 20261205 --max-examples 50

.PHONY: services
services: ## Only make sure PostgreSQL and Redis answer (starting throwaway ones if needed)
	@scripts/services.sh up

.PHONY: services-down
services-down: ## Stop the services `make services` started
	@scripts/services.sh down

.PHONY: build
build: ## Build every crate
	$(CARGO) build --workspace --all-targets

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: lint
lint: lint-rust lint-delivery ## Every check CI makes besides tests

.PHONY: lint-rust
lint-rust: ## rustfmt, clippy (-D warnings) and the sqlx offline cache
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: lint-delivery
lint-delivery: ## Lint Dockerfiles, docker-compose.yml, CI workflows, shell scripts and the k6 scripts
	bash scripts/lint-delivery.sh

.PHONY: sqlx-prepare
sqlx-prepare: ## Regenerate the sqlx offline cache (.sqlx/) against a scratch database
	SQLX_OFFLINE=true DATABASE_URL=$(SQLX_PREPARE_URL) $(CARGO) run -q -p celaest-central -- migrate
	rm -rf .sqlx && mkdir -p .sqlx
	find central edge tests -name '*.rs' -exec touch {} +
	SQLX_OFFLINE=false SQLX_OFFLINE_DIR=$(CURDIR)/.sqlx DATABASE_URL=$(SQLX_PREPARE_URL) \
		$(CARGO) check --workspace --all-targets

.PHONY: bench
bench: ## Quick benchmarks next to the baseline server: bench/results/latest.md (bench/README.md)
	bash bench/run.sh

.PHONY: bench-full
bench-full: ## make bench plus the million-license runs (memory, start-up, validation)
	bash bench/run.sh --full

.PHONY: coverage
coverage: ## Test coverage report (installs cargo-llvm-cov if missing)
	@scripts/coverage.sh

.PHONY: docker
docker: ## Build the container images (needs a Docker engine)
	@docker info >/dev/null 2>&1 || { echo "make docker: no Docker engine answers here; the images are linted by 'make lint-delivery'"; exit 1; }
	docker compose build

.PHONY: clean
clean: ## Remove build output and throwaway service data
	scripts/services.sh down
	$(CARGO) clean
