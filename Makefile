# Two commands for a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV = $(shell scripts/setup.sh | tail -n 1)
export VOICE_ASSETS_HOME ?= $(CURDIR)/data

.PHONY: setup demo test lint ui bench lock

setup:
	@scripts/setup.sh >/dev/null

demo:                 ## set up, generate a demo episode into the inbox, run the whole pipeline
	@v=$(VENV); $$v/bin/voice-assets demo && $$v/bin/voice-assets status

test:                 ## set up and run lint + the whole test suite
	@v=$(VENV); $$v/bin/ruff check . || exit 1; \
	$$v/bin/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

lint:
	@v=$(VENV); $$v/bin/ruff check . && $$v/bin/ruff format --check .

ui:                   ## the Dagster UI on http://127.0.0.1:3000
	@v=$(VENV); $$v/bin/voice-assets ui

bench:
	@v=$(VENV); $$v/bin/voice-assets bench

lock:                 ## re-resolve requirements.in into requirements.lock (needs the package index)
	@scripts/lock.sh
