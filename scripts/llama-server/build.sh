#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` from the llama.cpp sources vendored in llama-cpp-python's
# source distribution on PyPI (publisher: the llama-cpp-python project; version and SHA-256
# pinned below and checked before anything is built), with CMake and Ninja from PyPI. Network
# fetches of the build are off: no prebuilt web UI (LLAMA_USE_PREBUILT_UI=OFF, LLAMA_BUILD_UI=OFF),
# no TLS (LLAMA_OPENSSL=OFF). The binary is cached by the SHA-256 of the source archive, so a
# second run only prints its path.
#
# CPU: a portable build, not -march=native. A native build on a CPU with AMX (Intel Sapphire
# Rapids and later) takes ggml's AMX kernels, which crash with SIGSEGV at the first matrix product
# where the kernel or sandbox does not grant the AMX tile state; and a cached native binary can
# meet another CPU. So the build targets x86-64 with AVX2/FMA/F16C/BMI2 where the CPU has AVX2
# (x86-64-v3, every x86 server of the last decade), the plain baseline otherwise, and that
# choice is part of the cache key.
#
#   scripts/llama-server/build.sh          prints the binary's path on its last line
#
# Cache: ${AUTOPLAN_CACHE:-$HOME/.cache/autoplan}/llama-server/<sha256>-<cpu level>/llama-server
set -euo pipefail
cd "$(dirname "$0")/../.."

version=0.3.36
sha=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
size=76589250
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo; then
    level=x86-64-v3
    cpu_flags=(-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON)
else
    level=baseline
    cpu_flags=()
fi
cache=${AUTOPLAN_CACHE:-$HOME/.cache/autoplan}/llama-server/$sha-$level
bin=$cache/llama-server
if [ -x "$bin" ]; then
    echo "llama-server (llama-cpp-python $version sources, SHA-256 ${sha:0:12}..., $level): cached" >&2
    echo "$bin"
    exit 0
fi
start=$(date +%s)
for tool in python3 sha256sum tar g++; do
    command -v "$tool" >/dev/null || { echo "llama-server build: $tool is needed" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetching llama-cpp-python $version (source distribution, $size bytes) from PyPI" >&2
# The file's address comes from the registry's JSON API (PyPI's or a mirror's), its content is
# checked against the pinned hash.
python3 - "$version" "$work/src.tar.gz" <<'PY'
import json, sys, urllib.parse, urllib.request
version, dest = sys.argv[1], sys.argv[2]
index = f"https://pypi.org/pypi/llama-cpp-python/{version}/json"
try:
    meta = json.load(urllib.request.urlopen(index, timeout=60))
except Exception:
    index = "https://pypi.org/pypi/llama-cpp-python/json"
    meta = json.load(urllib.request.urlopen(index, timeout=60))
files = meta["releases"].get(version, []) if "releases" in meta else meta["urls"]
files = files or meta["urls"]
sdist = [f for f in files if f["packagetype"] == "sdist" and version in f["filename"]]
if not sdist:
    sys.exit(f"llama-cpp-python {version}: no source distribution in {index}")
url = urllib.parse.urljoin(index, sdist[0]["url"])
with urllib.request.urlopen(url, timeout=600) as r, open(dest, "wb") as out:
    while chunk := r.read(1 << 20):
        out.write(chunk)
PY
[ "$(stat -c %s "$work/src.tar.gz")" = "$size" ] || { echo "llama-server build: the archive is not $size bytes" >&2; exit 1; }
echo "$sha  $work/src.tar.gz" | sha256sum --check --status \
    || { echo "llama-server build: the archive's SHA-256 is not the pinned $sha" >&2; exit 1; }
tar -xzf "$work/src.tar.gz" -C "$work"
src=$work/llama_cpp_python-$version/vendor/llama.cpp
[ -f "$src/tools/server/CMakeLists.txt" ] || { echo "llama-server build: no llama.cpp server sources in the archive" >&2; exit 1; }
# CMake and Ninja from PyPI, in a private environment kept beside the cache.
tools=${AUTOPLAN_CACHE:-$HOME/.cache/autoplan}/build-tools
if [ ! -x "$tools/bin/cmake" ] || [ ! -x "$tools/bin/ninja" ]; then
    python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet "cmake==4.*" "ninja==1.*"
fi
export PATH=$tools/bin:$PATH
cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF \
    -DGGML_CCACHE=OFF -DGGML_NATIVE=OFF "${cpu_flags[@]}" >&2
cmake --build "$work/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$cache"
cp "$work/build/bin/llama-server" "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "built llama-server ($level) in $(( $(date +%s) - start )) s: $("$bin" --version 2>&1 | head -1)" >&2
echo "$bin"
