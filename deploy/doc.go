// Package deploy holds the deployment artifacts of onnxserve and the tests
// that keep them honest: the Kubernetes manifests in kubernetes/, the KServe
// resources in kserve/, and, at the repository root, Dockerfile,
// Dockerfile.gpu and .dockerignore. deploy/README.md is the guide.
//
// The package has no code of its own. Its tests decode every manifest
// strictly into the Kubernetes API types (or, for custom resources, into
// structs that list the fields the manifests use), parse the Dockerfiles
// with BuildKit's parser, and check both against the server's flags, ports,
// health endpoints and pinned ONNX Runtime build.
//
// It must not know the server's internals: it is a Go module of its own
// (so the Kubernetes and BuildKit types stay out of the server's go.mod),
// imports nothing from the server's module, and reads cmd/serve/options.go,
// scripts/fetch-onnxruntime.sh and go.mod as text, so a changed default or
// pin fails a test here instead of silently drifting away from the
// manifests.
package deploy
