#!/usr/bin/env bash
# Recipe for a lent GPU machine (the `device` tool): NVIDIA's Vulkan driver is there, Python 3.12 and
# pybind11 are installed, but no package registry is reachable. Two halves:
#
#   here (with registries):   tools/gpu_setup.sh prepare
#       downloads into .gpu/ (ignored by git): the Vulkan loader and headers, fmt headers,
#       glslang, and the kp 0.9.0 sdist; the device tool carries .gpu/ along (carry: [".gpu"]).
#   there (no registries):    bash tools/gpu_setup.sh install
#       unpacks the loader, builds kp against the carried headers with the pybind11 already there,
#       and puts it on PYTHONPATH in .gpu/site; then run e.g.
#       `. tools/gpu_setup.sh env && python -m pytest tests/test_barriers.py`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
G="$ROOT/.gpu"
case "${1:-}" in
  prepare)
    mkdir -p "$G/debs" "$G/sdist" /tmp/amd64/partial
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    apt-get $o update -qq
    (cd "$G/debs" && apt-get $o download libvulkan1 libvulkan-dev libfmt-dev libfmt9 glslang-tools \
        libglslang11 libspirv-tools-dev spirv-tools 2>/dev/null || true)
    python3 -m pip download -q --no-deps --no-binary :all: kp==0.9.0 -d "$G/sdist"
    grep -qx '/.gpu/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.gpu/' >> "$ROOT/.git/info/exclude"
    du -sh "$G";;
  install)
    for f in "$G"/debs/*.deb; do dpkg -x "$f" "$G/root"; done
    export CPATH="$G/root/usr/include" LIBRARY_PATH="$G/root/usr/lib/x86_64-linux-gnu"
    export LD_LIBRARY_PATH="$G/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
    export PATH="$G/root/usr/bin:$PATH"
    [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && \
      export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    KOMPUTE_OPT_USE_BUILT_IN_VULKAN_HEADER=OFF KOMPUTE_OPT_USE_BUILT_IN_FMT=OFF \
    KOMPUTE_OPT_USE_BUILT_IN_PYBIND11=OFF KOMPUTE_OPT_DISABLE_VULKAN_VERSION_CHECK=ON \
    KOMPUTE_OPT_INSTALL=OFF python3 -m pip install -q --no-build-isolation --no-index --no-deps \
      --target "$G/site" "$G"/sdist/kp-0.9.0.tar.gz;;
  env)
    export LD_LIBRARY_PATH="$G/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
    export PATH="$G/root/usr/bin:$PATH" PYTHONPATH="$G/site:$ROOT:${PYTHONPATH:-}"
    [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && \
      export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    return 0 2>/dev/null || true;;
  *) echo "usage: tools/gpu_setup.sh prepare|install|env" >&2; exit 2;;
esac
