#!/usr/bin/env bash
# Fetches the pinned ONNX Runtime shared library (the CPU build shipped inside
# the npm package onnxruntime-node), verifies its sha256 and caches it under
# .cache/onnxruntime/. A second run finds it cached and does nothing.
set -euo pipefail

ORT_VERSION=1.30.0
declare -A SHA256=(
  [x64]=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23
  [arm64]=1f549d46250b005580b597f4164984aaf75b3bcb9f3aeb07c7f8a8fe60b23c76
)

case "$(uname -m)" in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "fetch-onnxruntime: no pinned ONNX Runtime build for $(uname -m); set ONNXRUNTIME_LIB to your own libonnxruntime.so" >&2; exit 1 ;;
esac

top=$(cd "$(dirname "$0")/.." && pwd)
dir="$top/.cache/onnxruntime/$ORT_VERSION/linux-$arch"
lib="$dir/libonnxruntime.so.1"
want=${SHA256[$arch]}

if [ -f "$lib" ] && [ "$(sha256sum "$lib" | cut -d' ' -f1)" = "$want" ]; then
  exit 0
fi

command -v npm >/dev/null || { echo "fetch-onnxruntime: npm is needed to fetch onnxruntime-node@$ORT_VERSION (apt-get install -y npm)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching ONNX Runtime $ORT_VERSION ($arch) from npm package onnxruntime-node@$ORT_VERSION"
(cd "$tmp" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null)
tar -xzf "$tmp/onnxruntime-node-$ORT_VERSION.tgz" -C "$tmp" "package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
got=$(sha256sum "$tmp/package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
  echo "fetch-onnxruntime: sha256 mismatch for libonnxruntime.so.1 ($arch): got $got, want $want" >&2
  exit 1
fi
mkdir -p "$dir"
mv "$tmp/package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" "$lib.tmp"
mv "$lib.tmp" "$lib"
echo "cached $lib"
