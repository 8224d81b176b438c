# syntax=docker/dockerfile:1
#
# onnxserve, CPU image.
#
#   docker build -t ghcr.io/onnxserve/onnxserve:0.1.0 .
#   docker run --rm -v "$PWD/models:/models:ro" -p 8000-8002:8000-8002 ghcr.io/onnxserve/onnxserve:0.1.0
#   make image-test   # podman/buildah: build, run read-only, infer, SIGTERM
#
# Stages: lib fetches the pinned ONNX Runtime library (the same file and
# checksums as scripts/fetch-onnxruntime.sh), build compiles the server with
# cgo, runtime is the small image that runs it. deploy/README.md has the rest.

ARG GO_VERSION=1.26.8
ARG ORT_VERSION=1.30.0

# lib: the CPU build of ONNX Runtime shipped inside the npm package
# onnxruntime-node. It runs on the build machine's own platform because it
# only downloads and checks a file.
# Base images are fully qualified, as podman and CRI-O in strict
# short-name mode require.
FROM --platform=$BUILDPLATFORM docker.io/library/node:20-bookworm-slim AS lib
ARG ORT_VERSION
ARG TARGETARCH
ARG ORT_SHA256_X64=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23
ARG ORT_SHA256_ARM64=1f549d46250b005580b597f4164984aaf75b3bcb9f3aeb07c7f8a8fe60b23c76
WORKDIR /ort
RUN set -eu; \
    case "${TARGETARCH:-}" in \
      amd64) arch=x64; sum="$ORT_SHA256_X64" ;; \
      arm64) arch=arm64; sum="$ORT_SHA256_ARM64" ;; \
      "") echo "TARGETARCH is empty: build with BuildKit (docker buildx build, or Docker 23+)" >&2; exit 1 ;; \
      *) echo "no pinned ONNX Runtime build for $TARGETARCH (amd64 and arm64 have one)" >&2; exit 1 ;; \
    esac; \
    # npm's errors (registry unreachable, version unknown) stay visible.
    npm pack "onnxruntime-node@${ORT_VERSION}"; \
    member="package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"; \
    tar -xzf "onnxruntime-node-${ORT_VERSION}.tgz" "$member"; \
    echo "$sum  $member" | sha256sum -c -; \
    mv "$member" /ort/libonnxruntime.so.1; \
    rm -rf package "onnxruntime-node-${ORT_VERSION}.tgz"

# build: cgo is required, the ONNX Runtime binding loads the library with
# dlopen. Nothing of ONNX Runtime is needed at build time.
FROM docker.io/library/golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/onnxserve ./cmd/serve

# runtime: the same Debian release as the build stage, so the binary finds
# the glibc it was linked against; ONNX Runtime needs libstdc++ beside it.
# curl is here for HEALTHCHECK, sleep (coreutils) for the Kubernetes preStop hook.
FROM docker.io/library/debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libstdc++6 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=lib /ort/libonnxruntime.so.1 /opt/onnxserve/lib/libonnxruntime.so.1
COPY --from=build /out/onnxserve /usr/local/bin/onnxserve
# The server resolves the library from ONNXRUNTIME_LIB when --onnxruntime-lib
# is not given.
ENV ONNXRUNTIME_LIB=/opt/onnxserve/lib/libonnxruntime.so.1
# Fail the build, not the first start, when the binary or the library cannot
# be linked on this base.
RUN set -eu; \
    /usr/local/bin/onnxserve --help >/dev/null 2>/tmp/help || { cat /tmp/help >&2; exit 1; }; \
    if ldd "$ONNXRUNTIME_LIB" | grep 'not found'; then exit 1; fi; \
    rm -f /tmp/help; \
    mkdir -p /models /var/lib/onnxserve; \
    chown 65532:65532 /var/lib/onnxserve
# A numeric UID lets Kubernetes check runAsNonRoot without a passwd entry.
USER 65532:65532
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8000/v2/health/ready"]
# SIGTERM starts the ordered shutdown: readiness off, --shutdown-delay,
# then up to --drain-timeout for queued and running requests.
STOPSIGNAL SIGTERM
# Flags after the image name are appended; a repeated flag overrides the one
# here (the last value wins), so `docker run ... onnxserve:0.1.0
# --model-repository /other` works.
# The prediction store of models with a monitoring block lives in
# /var/lib/onnxserve; mount a volume there to keep it across containers.
ENTRYPOINT ["/usr/local/bin/onnxserve", "--model-repository", "/models", "--state-dir", "/var/lib/onnxserve", "--log-format", "json"]
