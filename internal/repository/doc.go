// Package repository reads the model repository folder: each model's
// config.yaml (strictly: unknown keys, wrong types and impossible values are
// errors that name the field), its numbered version folders, the version
// policy that picks which of them to serve, and changes on disk while the
// server runs.
//
// It answers "what should be served" as plain values (Config, Model,
// Snapshot). It must not know how a model is loaded, run, batched or routed,
// and it imports no other internal package: ONNX Runtime, requests and wire
// formats do not exist here.
package repository
