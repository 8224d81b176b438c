#!/usr/bin/env bash
# Regenerates the Go code for proto/inference.proto and proto/quality.proto.
#
# Usage: proto/generate.sh [OUTPUT_DIR]    (default: proto/)
#
# The plugins are pinned and installed into .cache/bin, and protoc must be
# 3.21.x, so that the committed files are reproducible byte for byte:
# proto_test.go regenerates into a temporary directory and compares.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$REPO/proto}"
BIN="$REPO/.cache/bin"

PROTOC_GEN_GO_VERSION="v1.36.12"
PROTOC_GEN_GO_GRPC_VERSION="v1.6.2"
PROTOC_SERIES="3.21."

if ! command -v protoc >/dev/null 2>&1; then
	echo "generate.sh: protoc not found; install it with: apt-get install -y protobuf-compiler" >&2
	exit 1
fi
protoc_version="$(protoc --version)"
case "$protoc_version" in
"libprotoc $PROTOC_SERIES"*) ;;
*)
	echo "generate.sh: need protoc ${PROTOC_SERIES}x (Debian protobuf-compiler), found '$protoc_version';" \
		"the committed code records the protoc version, so another one would rewrite it" >&2
	exit 1
	;;
esac

# install_plugin PACKAGE BINARY VERSION: installs PACKAGE@VERSION unless the
# cached BINARY already reports VERSION.
install_plugin() {
	local pkg="$1" bin="$2" want="$3"
	if [[ -x "$BIN/$bin" ]] && [[ "$("$BIN/$bin" --version 2>/dev/null)" == *"${want#v}" ]]; then
		return
	fi
	mkdir -p "$BIN"
	GOBIN="$BIN" go install "$pkg@$want"
}

install_plugin google.golang.org/protobuf/cmd/protoc-gen-go protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install_plugin google.golang.org/grpc/cmd/protoc-gen-go-grpc protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

mkdir -p "$OUT"
protoc \
	--proto_path="$REPO/proto" \
	--plugin=protoc-gen-go="$BIN/protoc-gen-go" \
	--plugin=protoc-gen-go-grpc="$BIN/protoc-gen-go-grpc" \
	--go_out="$OUT" --go_opt=paths=source_relative \
	--go-grpc_out="$OUT" --go-grpc_opt=paths=source_relative \
	inference.proto quality.proto
