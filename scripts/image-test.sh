#!/usr/bin/env bash
# Image smoke test (`make image-test`, opt-in): builds the CPU image with a
# daemonless builder (podman, or buildah to build and podman to run), runs
# it as the Kubernetes Deployment does (read-only root, UID 65532, no
# capabilities, no privilege escalation, models mounted read-only, /tmp a
# tmpfs), waits for readiness, runs one inference, then stops it with
# SIGTERM and requires a clean exit. Where no builder or no base image is
# available it says so and exits 0 (skipped); a failed build or check exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=localhost/onnxserve:image-test
go_version=$(sed -n 's/^ARG GO_VERSION=//p' Dockerfile)
bases=(docker.io/library/node:20-bookworm-slim "docker.io/library/golang:${go_version}-bookworm" docker.io/library/debian:bookworm-slim)
ready_timeout=${IMAGE_TEST_READY_TIMEOUT:-120}

skip() { echo "image-test: SKIPPED: $*"; exit 0; }
fail() { echo "image-test: FAILED: $*" >&2; exit 1; }

command -v podman >/dev/null || skip "podman is not installed (Debian: apt-get install podman buildah); it runs the image daemonless"
build=(podman build)
if command -v buildah >/dev/null; then build=(buildah bud); fi

# The Dockerfile's FROM lines name these (golang through GO_VERSION).
for b in "${bases[0]}" "${bases[2]}"; do
	grep -q "^FROM .*$b " Dockerfile || fail "scripts/image-test.sh expects base $b, which the Dockerfile no longer uses"
done
for b in "${bases[@]}"; do
	if ! podman image exists "$b"; then
		podman pull -q "$b" >/dev/null 2>&1 || skip "base image $b is neither present nor pullable (no registry reachable?); pull or load it, then run again"
	fi
done

echo "image-test: building $tag with ${build[*]}"
"${build[@]}" -f Dockerfile -t "$tag" . || fail "image build failed (output above)"

name=onnxserve-image-test-$$
cleanup() { podman rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
podman run -d --name "$name" --read-only --tmpfs /tmp --user 65532:65532 --cap-drop ALL \
	--security-opt no-new-privileges -v "$PWD/models:/models:ro" -p 127.0.0.1::8000 "$tag" >/dev/null
port=$(podman port "$name" 8000/tcp | head -1 | sed 's/.*://')
[ -n "$port" ] || fail "no host port for 8000"

echo "image-test: waiting for readiness on 127.0.0.1:$port"
start=$(date +%s)
until curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/health/ready"; do
	[ "$(podman inspect -f '{{.State.Running}}' "$name")" = true ] || { podman logs "$name" >&2; fail "the container exited before it was ready"; }
	[ $(($(date +%s) - start)) -lt "$ready_timeout" ] || { podman logs "$name" >&2; fail "not ready after ${ready_timeout}s"; }
	sleep 1
done
ready_s=$(($(date +%s) - start))

req='{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}'
resp=$(curl -fsS -H 'Content-Type: application/json' -d "$req" "http://127.0.0.1:$port/v2/models/simple/infer") || fail "inference failed"
echo "$resp" | grep -q '"data":\[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16\]' || fail "unexpected inference answer: $resp"

user=$(podman exec "$name" id -u 2>/dev/null || podman inspect -f '{{.Config.User}}' "$name")
case "$user" in 65532*) ;; *) fail "the server runs as $user, not 65532" ;; esac

podman stop -t 45 "$name" >/dev/null
code=$(podman inspect -f '{{.State.ExitCode}}' "$name")
podman logs "$name" 2>&1 | grep -q '"shutdown complete"' || { podman logs "$name" >&2; fail "no 'shutdown complete' in the log"; }
[ "$code" = 0 ] || { podman logs "$name" >&2; fail "exit code $code after SIGTERM, want 0"; }
echo "image-test: PASSED (ready after ${ready_s}s, one inference, UID 65532, clean SIGTERM exit)"
