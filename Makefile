# Two commands do all set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-min lint docs install bench clean demo

$(STAMP): pyproject.toml setup.py requirements/torch-cpu.txt bot/generation/_matvec.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU torch wheel first, and held there as a constraint: without it pip 26 was
	# seen replacing it with a multi-GB CUDA build while installing the rest.
	$(PY) -m pip install --quiet -r requirements/torch-cpu.txt
	$(PY) -m pip install --quiet -e '.[train,ray,dev]' -c requirements/torch-cpu.txt
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/thumbtune run $(ARGS)

test: lint docs
	$(PY) -m pytest $(PYTEST_ARGS)

# The suite against the lowest version of every declared range (requirements/min-versions.txt),
# in a virtualenv of its own; `make test` covers the newest.
VENV_MIN  ?= .venv-min
STAMP_MIN := $(VENV_MIN)/.installed

$(STAMP_MIN): pyproject.toml setup.py requirements/torch-cpu.txt requirements/min-versions.txt bot/generation/_matvec.c
	test -x $(VENV_MIN)/bin/python || $(PYTHON) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_MIN)/bin/python -m pip install --quiet -r requirements/torch-cpu.txt
	$(VENV_MIN)/bin/python -m pip install --quiet -e '.[train,ray,dev]' -c requirements/min-versions.txt
	touch $(STAMP_MIN)

test-min: $(STAMP_MIN)
	$(VENV_MIN)/bin/python -m pytest $(PYTEST_ARGS)

# Lint, format and types (configured in pyproject.toml); part of `make test`.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The docs site (mkdocs.yml, docs/): --strict fails on a broken link or anchor; part of `make test`.
# Not --quiet: it hides the warnings, and --strict then passes them.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

bench: $(STAMP)
	$(PY) -m bench.generation --quick
	$(PY) -m bench.reload --quick

clean:
	rm -rf $(VENV) $(VENV_MIN) build site *.egg-info .pytest_cache .mypy_cache .ruff_cache bot/generation/_matvec*.so

demo: $(STAMP)
	test -f models/tiny/config.json || $(VENV)/bin/thumbtune make-tiny-model models/tiny
	THUMBTUNE_MODEL=models/tiny $(VENV)/bin/thumbtune run $(ARGS)
