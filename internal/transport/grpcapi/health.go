package grpcapi

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/transport"
	inference "github.com/onnxserve/onnxserve/proto"
)

// healthService answers grpc.health.v1.Health from the backend's live state
// rather than from a table kept up to date by hand, so it can never disagree
// with ServerReady and ModelReady. The service names are "" and
// "inference.GRPCInferenceService" (the whole server) and each model's name.
type healthService struct {
	healthpb.UnimplementedHealthServer
	b        healthSource
	interval time.Duration
	quit     <-chan struct{}

	down     chan struct{} // closed by setNotServing
	downOnce sync.Once
}

// healthSource is what health checks read: readiness, and the index for
// the model names.
type healthSource interface {
	Ready() bool
	ModelReady(name, version string) (bool, error)
	Index() []serving.IndexEntry
}

func newHealthService(b healthSource, interval time.Duration, quit <-chan struct{}) *healthService {
	return &healthService{b: b, interval: interval, quit: quit, down: make(chan struct{})}
}

func (h *healthService) setNotServing() { h.downOnce.Do(func() { close(h.down) }) }

func (h *healthService) isDown() bool {
	select {
	case <-h.down:
		return true
	default:
		return false
	}
}

// status returns a service's status; ok is false for an unknown service.
func (h *healthService) status(service string) (st healthpb.HealthCheckResponse_ServingStatus, ok bool) {
	var serving bool
	switch service {
	case "", inference.GRPCInferenceService_ServiceDesc.ServiceName:
		serving = h.b.Ready()
	default:
		ready, err := h.b.ModelReady(service, "")
		if err != nil {
			if code, _ := transport.Status(err); code == codes.NotFound {
				return healthpb.HealthCheckResponse_SERVICE_UNKNOWN, false
			}
		}
		serving = ready && err == nil
	}
	if serving && !h.isDown() {
		return healthpb.HealthCheckResponse_SERVING, true
	}
	return healthpb.HealthCheckResponse_NOT_SERVING, true
}

// Check reports a service's status; an unknown service is NOT_FOUND, as the
// health protocol asks.
func (h *healthService) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	st, ok := h.status(req.GetService())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "unknown service %q", req.GetService())
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

// List reports the server and every model the repository index knows.
func (h *healthService) List(_ context.Context, _ *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	out := &healthpb.HealthListResponse{Statuses: map[string]*healthpb.HealthCheckResponse{}}
	names := []string{"", inference.GRPCInferenceService_ServiceDesc.ServiceName}
	for _, e := range h.b.Index() {
		names = append(names, e.Name)
	}
	for _, n := range names {
		if _, seen := out.Statuses[n]; seen {
			continue
		}
		if st, ok := h.status(n); ok {
			out.Statuses[n] = &healthpb.HealthCheckResponse{Status: st}
		}
	}
	return out, nil
}

// Watch sends a service's status now and again on every change, noticed
// every interval, or at once for SetNotServing. It ends with UNAVAILABLE when
// the server stops, after sending NOT_SERVING.
func (h *healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ticker := time.NewTicker(h.interval)
	defer ticker.Stop()
	down := h.down
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	send := func(st healthpb.HealthCheckResponse_ServingStatus) error {
		if st == last {
			return nil
		}
		last = st
		return stream.Send(&healthpb.HealthCheckResponse{Status: st})
	}
	for {
		st, _ := h.status(req.GetService())
		if err := send(st); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		case <-h.quit:
			if err := send(healthpb.HealthCheckResponse_NOT_SERVING); err != nil {
				return err
			}
			return status.Error(codes.Unavailable, "server is shutting down")
		case <-down:
			down = nil // closed for good: look once, then never again
		case <-ticker.C:
		}
	}
}
