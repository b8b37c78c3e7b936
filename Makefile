# Fresh machine: `make run` (the bot on SQLite, no token) and `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed
BENCH_STAMP = $(VENV)/.installed-bench

.PHONY: run chat test lint bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hocvuso run

chat: $(STAMP)
	$(BIN)/hocvuso chat

test: $(STAMP) lint
	$(BIN)/hocvuso content check
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[test,bench]"
	touch $(BENCH_STAMP)

# About 10 minutes. The figures at full size: bench/broadcast.py (20,000 recipients), bench/export_log.py (1M rows).
bench: $(BENCH_STAMP)
	$(BIN)/python bench/match_accuracy.py
	$(BIN)/python bench/inbound.py
	$(BIN)/python bench/broadcast_vs_ptb.py
	$(BIN)/python bench/broadcast.py --recipients 6000
	$(BIN)/python bench/fuzz.py
	$(BIN)/python bench/zalo_oa_broadcast.py --recipients 2000 --stale 200
	$(BIN)/python bench/export_log.py --rows 100000
