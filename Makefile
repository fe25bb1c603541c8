# d06 — the two commands that matter: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test unit integration e2e lint typecheck bench migrate install clean

$(STAMP): pyproject.toml
	@echo "==> installing d06 and its pinned dependencies into $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

run: $(STAMP)  ## start PostgreSQL, the broker and the three services, load demo data
	@$(BIN)/d06 run

test: $(STAMP)  ## the whole suite: unit, integration (real PostgreSQL + broker) and end-to-end, two at a time
	@$(BIN)/pytest -q -n 2 --dist loadfile

unit: $(STAMP)
	@$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	@$(BIN)/pytest -q tests/integration

e2e: $(STAMP)
	@$(BIN)/pytest -q tests/e2e

lint: $(STAMP)
	@$(BIN)/ruff check .

typecheck: $(STAMP)
	@$(BIN)/mypy

migrate: $(STAMP)
	@$(BIN)/d06 migrate

bench: $(STAMP)
	@$(BIN)/python -m bench

clean:
	rm -rf .run $(VENV)
