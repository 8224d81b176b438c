package serving

import (
	"context"
	"errors"
	"time"

	"github.com/onnxserve/onnxserve/internal/batcher"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Errors a caller maps to protocol statuses (see package transport).
var (
	// ErrModelNotFound: no model of that name is in the repository.
	ErrModelNotFound = errors.New("model not found")
	// ErrVersionNotFound: the model exists but not that version.
	ErrVersionNotFound = errors.New("version not found")
	// ErrNotReady: the model or version exists but cannot serve now.
	ErrNotReady = errors.New("not ready")
	// ErrShuttingDown: the server is draining and takes no new work.
	ErrShuttingDown = errors.New("server is shutting down")
	// ErrInvalidRequest wraps errors in what the client sent.
	ErrInvalidRequest = tensor.ErrInvalid
	// ErrOverloaded: the version's queue is full; retry later.
	ErrOverloaded = batcher.ErrOverloaded
	// ErrClosed: the version's batcher stopped taking work (it is being
	// retired); transient.
	ErrClosed = batcher.ErrClosed
	// ErrUnauthorized: a management call without valid credentials.
	ErrUnauthorized = errors.New("unauthorized")
)

// Model is one loaded, runnable model version as the Loader returns it.
// Run must be safe for concurrent use and must not keep its inputs.
type Model interface {
	Inputs() []tensor.Spec
	Outputs() []tensor.Spec
	Run(ctx context.Context, in []tensor.Tensor) ([]tensor.Tensor, error)
	Close() error
}

// Metadata is a request's transport metadata: HTTP headers (and, for
// HTTP, request parameters of the same name), or gRPC metadata. Get returns
// the value of key, or "" when the request carries none. The serving core
// calls it only during Infer, on the caller's goroutine.
type Metadata interface {
	Get(key string) string
}

// Request is one inference request after decoding. Precondition, owned by
// the front end's decoder: every input is a valid tensor (its data matches
// its shape and datatype, tensor.Validate). Inputs may be in any order;
// Infer checks them against the model and puts them in declared order. The
// serving core keeps the Request until Infer returns, so callers must not
// reuse its buffers before then.
type Request struct {
	Model   string
	Version string // "" lets the router choose
	// ID identifies the request in responses, logs and tap records; the
	// front end settles it before Infer (see transport.RequestID).
	ID     string
	Inputs []tensor.Tensor
	// Outputs names the outputs to return; empty returns all of them.
	Outputs []string
	// RoutingKey is the routing_key request parameter; a value under the
	// model's sticky key in Metadata wins over it. "" routes at random.
	RoutingKey string
	// Metadata, when not nil, is where the model's sticky key is looked
	// up, once, after the model is found.
	Metadata Metadata
	// Protocol names the front end ("http", "grpc") in tap records.
	Protocol string
	// Arrival is when the request arrived, for tap records; zero means
	// when Infer was called.
	Arrival time.Time
	// Sequence carries the sequence_id, sequence_start and sequence_end
	// parameters, for a model with sequence_batching.
	Sequence Sequence
}

// Response is the result of one Infer call. Model and Version are the
// canonical labels of the version that served it.
type Response struct {
	Model   string
	Version string // the version that actually served the request
	ID      string
	Outputs []tensor.Tensor

	all []tensor.Tensor // every model output, for shadow comparison and taps
}

// ModelMetadata describes a model version as the v2 metadata endpoints do.
type ModelMetadata struct {
	Name     string
	Versions []string
	Platform string
	Inputs   []tensor.Spec
	Outputs  []tensor.Spec
}

// State is a version's lifecycle state as the repository index reports it.
type State string

// The states of DESIGN §1.
const (
	StateReady       State = "READY"
	StateLoading     State = "LOADING"
	StateUnavailable State = "UNAVAILABLE"
	StateUnloading   State = "UNLOADING"
)

// IndexEntry is one row of the repository index.
type IndexEntry struct {
	Name    string
	Version string
	State   State
	Reason  string
	// Batching says, for a READY version whose batch size was chosen by
	// measurement (auto), the sizes timed and the one chosen; "" otherwise.
	Batching string
}
