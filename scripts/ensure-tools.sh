#!/usr/bin/env bash
# Installs the external tools some tests drive (protoc for the proto staleness
# check, prometheus for the end-to-end scrape test) from Debian's packages when
# they are missing and we may install. With --check it only reports whether
# they are all present.
set -uo pipefail

need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v prometheus >/dev/null || need+=(prometheus)

if [ "${1:-}" = "--check" ]; then
  [ ${#need[@]} -eq 0 ]
  exit
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "ensure-tools: missing ${need[*]}; tests that need them will be skipped (install them with apt-get)" >&2
  exit 0
fi
echo "ensure-tools: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
  || echo "ensure-tools: could not install ${need[*]}; tests that need them will be skipped" >&2
exit 0
