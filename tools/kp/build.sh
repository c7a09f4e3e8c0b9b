#!/usr/bin/env bash
# Build kp 0.9.0 from its PyPI sdist with the patches in tools/kp/patches, into one Python.
#
#   tools/kp/build.sh PYTHON [SDIST]
#
# Offline against Debian's headers (cmake g++ libvulkan-dev libfmt-dev pybind11-dev). The sdist is
# downloaded by pip (or given), checked against its sha256, patched in a scratch directory, and built
# with pip's wheel cache off, so a wheel cached from an unpatched build can never be used. The build
# is installed as kp 0.9.0+vkharp.N (see 0002-local-version.patch); it records the patches' hash in
# the interpreter's prefix so that tools/bootstrap.sh rebuilds when a patch changes.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${1:?usage: build.sh PYTHON [SDIST]}"
SDIST="${2:-}"
SHA256=98e583dc6e9731ff6d7a3e3317817e4d93f7b2945929619e29a56325db279949
say() { echo "[kp build] $*" >&2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/vkharp-kp.XXXXXX")"
trap 'rm -rf "$work"' EXIT
if [ -z "$SDIST" ]; then
  "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: kp==0.9.0 -d "$work"
  SDIST="$work/kp-0.9.0.tar.gz"
fi
echo "$SHA256  $SDIST" | sha256sum -c --quiet - || { say "$SDIST is not the kp 0.9.0 sdist (sha256 differs)"; exit 1; }
tar xzf "$SDIST" -C "$work"
src="$work/kp-0.9.0"
for p in "$HERE"/patches/*.patch; do
  patch -d "$src" -p1 --batch --forward --quiet < "$p" || { say "patch $(basename "$p") does not apply"; exit 1; }
done
version="$(sed -n "s/^ *version='\(.*\)',/\1/p" "$src/setup.py")"
say "building kp $version with $(ls "$HERE"/patches/*.patch | wc -l) patches (about a minute)"
KOMPUTE_OPT_USE_BUILT_IN_VULKAN_HEADER=OFF KOMPUTE_OPT_USE_BUILT_IN_FMT=OFF \
KOMPUTE_OPT_USE_BUILT_IN_PYBIND11=OFF KOMPUTE_OPT_DISABLE_VULKAN_VERSION_CHECK=ON \
KOMPUTE_OPT_DISABLE_VK_DEBUG_LAYERS=ON KOMPUTE_OPT_INSTALL=OFF \
  "$PY" -m pip install --disable-pip-version-check -q --no-cache-dir --no-build-isolation --no-deps \
  --force-reinstall "$src"
got="$("$PY" -c 'import kp; print(kp.__version__)')"
[ "$got" = "$version" ] || { say "built kp reports version $got, expected $version"; exit 1; }
# Where bootstrap looks for it: the venv (sys.prefix), or the pip target directory when PIP_TARGET is set.
dest="${PIP_TARGET:-$("$PY" -c 'import sys; print(sys.prefix)')}"
cat "$HERE"/patches/*.patch | sha256sum | cut -c1-16 > "$dest/.vkharp-kp-patches"
say "kp $got installed"
