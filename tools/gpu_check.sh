#!/usr/bin/env bash
# One command for a real GPU machine: the barrier stress test, selfcheck, the validation gate, the
# fidelity tests and `vkharp bench`, then one row for the README's hardware table.
#
# The lent GPU machine (the `device` tool) has NVIDIA's Vulkan driver, Python 3.12 with torch,
# transformers, tokenizers, safetensors, jinja2, tqdm and pybind11, but no package registry. So:
#
#   here (with registries):  tools/gpu_check.sh prepare
#       downloads into .gpu/ (ignored by git): the Vulkan loader, headers, fmt, glslang, SPIR-V
#       tools and the validation layer as Debian packages, kp's sdist, and wheels of what the
#       machine lacks (numpy<2, gguf, pexpect). About 30 MB; the device tool carries it
#       (carry: [".gpu"]).
#   there:                   bash tools/gpu_check.sh
#       unpacks the packages into .gpu/root, builds kp with our patches into .gpu/site, and runs
#       the checks. The default model's 98 MB GGUF cannot travel, so bench runs on a random-init
#       checkpoint of SmolLM2-135M's shapes made there with transformers, converted to q4_1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
G="$ROOT/.gpu"
PY="${PYTHON:-python3}"
if [ "${1:-}" = "prepare" ]; then
  mkdir -p "$G/debs" "$G/sdist" "$G/wheels" /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update -qq
  (cd "$G/debs" && apt-get $o download libvulkan1 libvulkan-dev libfmt-dev libfmt9 glslang-tools \
      spirv-tools vulkan-validationlayers patch)
  python3 -m pip download -q --no-deps --no-binary :all: kp==0.9.0 -d "$G/sdist"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$G/wheels" "numpy==1.26.4"
  python3 -m pip download -q --no-deps -d "$G/wheels" "gguf==0.19.0" pexpect ptyprocess
  grep -qx '/.gpu/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.gpu/' >> "$ROOT/.git/info/exclude"
  du -sh "$G"
  exit 0
fi

# --- on the GPU machine -------------------------------------------------------------------------
[ -d "$G/debs" ] || { echo "no .gpu/: run 'tools/gpu_check.sh prepare' where the registries are, and carry .gpu" >&2; exit 2; }
for f in "$G"/debs/*.deb; do dpkg -x "$f" "$G/root"; done
LIB="$G/root/usr/lib/x86_64-linux-gnu"
export CPATH="$G/root/usr/include" LIBRARY_PATH="$LIB" LD_LIBRARY_PATH="$LIB:${LD_LIBRARY_PATH:-}"
export PATH="$G/root/usr/bin:$PATH"
export VK_LAYER_PATH="$G/root/usr/share/vulkan/explicit_layer.d"
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && \
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
"$PY" -m pip install -q --no-index --no-deps --no-compile --target "$G/site" "$G"/wheels/*.whl
export PYTHONPATH="$G/site:$ROOT:${PYTHONPATH:-}"
# build.sh installs into the interpreter; here into .gpu/site (PIP_TARGET), from the carried sdist
PIP_TARGET="$G/site" PIP_NO_INDEX=1 "$ROOT/tools/kp/build.sh" "$PY" "$G"/sdist/kp-0.9.0.tar.gz
export PYTHONUNBUFFERED=1
cd "$ROOT"
status() { [ "$1" -eq 0 ] && echo pass || echo "FAIL ($1)"; }
set +e
"$PY" -m engine.cli devices
"$PY" -m pytest -q -p no:cacheprovider tests/test_barriers.py; r_barrier=$?
"$PY" -m engine.cli selfcheck; r_self=$?
"$PY" -m pytest -q -p no:cacheprovider tests/test_validation.py; r_gate=$?
"$PY" -m pytest -q -p no:cacheprovider tests/test_model_fidelity.py tests/test_harp.py; r_fid=$?
model="$(mktemp -d)"
"$PY" - "$model" <<'PYEOF'
import sys
sys.path.insert(0, "tests")
from checkpoints import make_hf_checkpoint
from engine.convert import convert
src = make_hf_checkpoint(sys.argv[1] + "/hf", "llama", hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         vocab_size=49152, tie_word_embeddings=True)
convert(src, sys.argv[1] + "/q4_1", dtype="q4_1", progress=False)
PYEOF
"$PY" -m engine.cli bench "$model/q4_1" --no-modes --json "$model/bench.json"; r_bench=$?
set -e
dev="$("$PY" -c 'from engine.device import list_devices; print(list_devices()[0].name)')"
dec="$("$PY" -c "import json; r=json.load(open('$model/bench.json')); print(f\"{r['decode_tok_s']:.0f} tok/s decode, {r['prefill']['128']['tok_s']:.0f} tok/s prefill 128, floor {r['floor_tok_s']:.0f} tok/s\")" 2>/dev/null || echo "bench failed")"
echo
echo "README row:"
echo "| $dev | $(status $r_barrier) | $(status $r_self) | $(status $r_gate) | $(status $r_fid) | $dec (SmolLM2-135M shapes, q4_1, random weights) |"
