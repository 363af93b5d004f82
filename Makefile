# Two commands do all set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint install bench clean demo

$(STAMP): pyproject.toml setup.py requirements/torch-cpu.txt bot/generation/_matvec.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU torch wheel first, so nothing below pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet -r requirements/torch-cpu.txt
	$(PY) -m pip install --quiet -e '.[train,ray,dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/thumbtune run $(ARGS)

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

# Lint, format and types (configured in pyproject.toml); part of `make test`.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m bench.generation --quick
	$(PY) -m bench.reload --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache bot/generation/_matvec*.so

demo: $(STAMP)
	test -f models/tiny/config.json || $(VENV)/bin/thumbtune make-tiny-model models/tiny
	THUMBTUNE_MODEL=models/tiny $(VENV)/bin/thumbtune run $(ARGS)
