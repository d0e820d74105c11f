#!/usr/bin/env bash
# Install PyTorch into the given Python's environment without pulling CUDA wheels on a CPU machine.
#   - torch already importable: leave it alone (a user's GPU build stays).
#   - an NVIDIA GPU is visible: the default PyPI build (CUDA).
#   - otherwise: the CPU build, from a local wheel directory if pip knows one, else PyTorch's CPU index.
set -euo pipefail
py=${1:?usage: install-torch.sh PYTHON}
version=${TORCH_VERSION:-2.13.0}

if "$py" -c "import torch" 2>/dev/null; then
    echo "torch $("$py" -c 'import torch; print(torch.__version__)') already installed; leaving it alone"
    exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "NVIDIA GPU found: installing the CUDA build of torch"
    exec "$py" -m pip install "torch==$version"
fi
echo "no GPU found: installing the CPU build of torch $version"
"$py" -m pip install "torch==$version+cpu" 2>/dev/null \
    || "$py" -m pip install "torch==$version+cpu" \
        --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple
