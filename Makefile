# whisperfarm — `make run` starts a local farm, `make test` runs every test.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# torch first and pinned: anything unpinned pulls a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: install run test lint pytest clean dashboard
CHECKOV_VENV ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	# openai-whisper without its requirements (they would pull triton); the rest come from pyproject.
	$(PIP) install -q --no-deps openai-whisper==20250625
	$(PIP) install -q -e '.[test,deploy]'
	touch $(STAMP)

install: $(STAMP)

## run: broker + 1 worker with the bundled multilingual `base` model on :8000
run: $(STAMP)
	$(VENV)/bin/whisperfarm up --model base

## test: lint, type-check, then every test (real processes, real model)
test: lint pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

pytest: $(STAMP) $(CHECKOV_STAMP)
	$(PY) -m pytest

# checkov pins its own packaging/pytest: keep it out of the project venv.
$(CHECKOV_STAMP):
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q checkov==3.3.30
	touch $(CHECKOV_STAMP)

## dashboard: regenerate deploy/grafana/whisperfarm.json and the chart's copy
dashboard: $(STAMP)
	$(PY) tools/gen_dashboard.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache
