# Two commands for a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV = $(shell scripts/setup.sh | tail -n 1)
export VOICE_ASSETS_HOME ?= $(CURDIR)/data

.PHONY: setup demo test test-gpu-profile lint ui bench lock

setup:
	@scripts/setup.sh >/dev/null

demo:                 ## set up, generate a demo episode into the inbox, run the whole pipeline
	@v=$(VENV); $$v/bin/voice-assets demo && $$v/bin/voice-assets status

test:                 ## set up and run lint + the whole test suite, then the GPU profile's tests
	@v=$(VENV); $$v/bin/ruff check . || exit 1; \
	$$v/bin/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	[ $$rc -eq 0 ] || exit $$rc; $(MAKE) --no-print-directory test-gpu-profile

test-gpu-profile:     ## the heavy backends (pyannote, whisperx, htdemucs, ...) in the GPU profile's env, on CPU
	@v=$$(VOICE_ASSETS_PROFILE=gpu scripts/setup.sh | tail -n 1); \
	VOICE_ASSETS_PROFILE=gpu $$v/bin/python -m pytest -m "gpu_profile or heavy_backend"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no GPU-profile tests collected: failing" >&2; exit 1; fi; exit $$rc

lint:                 ## ruff's checks (the code is laid out by hand, not by ruff format)
	@v=$(VENV); $$v/bin/ruff check .

ui:                   ## the Dagster UI on http://127.0.0.1:3000
	@v=$(VENV); $$v/bin/voice-assets ui

bench:
	@v=$(VENV); $$v/bin/voice-assets bench

lock:                 ## re-resolve both profiles' requirements into their locks (needs the package index)
	@scripts/lock.sh
