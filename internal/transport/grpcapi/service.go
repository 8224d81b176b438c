package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
	"github.com/onnxserve/onnxserve/internal/transport"
	"github.com/onnxserve/onnxserve/internal/transport/guard"
	inference "github.com/onnxserve/onnxserve/proto"
)

// Metadata keys the service reads.
const (
	// RoutingKeyMetadata is the default metadata key (a model's
	// traffic.sticky_key overrides it) that pins a caller to one traffic
	// arm; it wins over the routing_key request parameter.
	RoutingKeyMetadata = "x-routing-key"
	// AuthorizationMetadata carries "Bearer <token>" for the repository RPCs.
	AuthorizationMetadata = "authorization"
)

// Parameter names of the repository RPCs.
const (
	// ConfigParameter of RepositoryModelLoad carries a config override: the
	// text of a config.yaml (JSON is YAML too).
	ConfigParameter = "config"
	// unloadDependentsParameter is accepted and ignored: onnxserve has no
	// ensembles, so a model has no dependents.
	unloadDependentsParameter = "unload_dependents"
)

// service implements inference.GRPCInferenceService. Safe for concurrent
// use: it holds no per-call state.
type service struct {
	inference.UnimplementedGRPCInferenceServiceServer
	inf    Inference
	models Models
	repo   Repository
	cfg    Config
	log    *zap.Logger
	quit   <-chan struct{}
	health *healthService
	codec  *codec // releases stream requests' receive buffers
}

func (s *service) ServerLive(context.Context, *inference.ServerLiveRequest) (*inference.ServerLiveResponse, error) {
	return &inference.ServerLiveResponse{Live: s.models.Live()}, nil
}

func (s *service) ServerReady(context.Context, *inference.ServerReadyRequest) (*inference.ServerReadyResponse, error) {
	return &inference.ServerReadyResponse{Ready: s.models.Ready() && !s.health.isDown()}, nil
}

func (s *service) ModelReady(_ context.Context, req *inference.ModelReadyRequest) (*inference.ModelReadyResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name: a model name is required")
	}
	ready, err := s.models.ModelReady(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, transport.GRPCError(err)
	}
	return &inference.ModelReadyResponse{Ready: ready}, nil
}

func (s *service) ServerMetadata(context.Context, *inference.ServerMetadataRequest) (*inference.ServerMetadataResponse, error) {
	return &inference.ServerMetadataResponse{
		Name:       "onnxserve",
		Version:    s.cfg.Version,
		Extensions: s.cfg.Extensions,
	}, nil
}

func (s *service) ModelMetadata(_ context.Context, req *inference.ModelMetadataRequest) (*inference.ModelMetadataResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name: a model name is required")
	}
	md, err := s.models.ModelMetadata(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, transport.GRPCError(err)
	}
	return &inference.ModelMetadataResponse{
		Name:     md.Name,
		Versions: md.Versions,
		Platform: md.Platform,
		Inputs:   encodeSpecs(md.Inputs),
		Outputs:  encodeSpecs(md.Outputs),
	}, nil
}

func (s *service) ModelStatistics(_ context.Context, req *inference.ModelStatisticsRequest) (*inference.ModelStatisticsResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name: a model name is required")
	}
	st, err := s.models.Statistics(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, transport.GRPCError(err)
	}
	dur := func(d serving.Duration) *inference.StatisticDuration {
		return &inference.StatisticDuration{Count: uint64(d.Count), Ns: uint64(d.Total)}
	}
	resp := &inference.ModelStatisticsResponse{}
	for _, v := range st {
		ms := &inference.ModelStatistics{
			Name:           v.Name,
			Version:        v.Version,
			InferenceCount: uint64(v.InferenceCount),
			ExecutionCount: uint64(v.ExecutionCount),
			InferenceStats: &inference.InferStatistics{
				Success:      dur(v.Success),
				Fail:         dur(v.Fail),
				Queue:        dur(v.Queue),
				ComputeInfer: dur(v.Compute),
			},
		}
		if !v.LastInference.IsZero() {
			ms.LastInference = uint64(v.LastInference.UnixMilli())
		}
		resp.ModelStats = append(resp.ModelStats, ms)
	}
	return resp, nil
}

func (s *service) RepositoryIndex(ctx context.Context, req *inference.RepositoryIndexRequest) (*inference.RepositoryIndexResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	entries := s.repo.Index()
	out := &inference.RepositoryIndexResponse{Models: make([]*inference.RepositoryIndexResponse_ModelIndex, 0, len(entries))}
	for _, e := range entries {
		if req.GetReady() && e.State != serving.StateReady {
			continue
		}
		out.Models = append(out.Models, &inference.RepositoryIndexResponse_ModelIndex{
			Name:    e.Name,
			Version: e.Version,
			State:   string(e.State),
			Reason:  s.cfg.Scrub.Scrub(e.Reason),
		})
	}
	return out, nil
}

func (s *service) RepositoryModelLoad(ctx context.Context, req *inference.RepositoryModelLoadRequest) (*inference.RepositoryModelLoadResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	name, err := repositoryModelName(req.GetModelName(), req.GetRepositoryName())
	if err != nil {
		return nil, err
	}
	var override []byte
	for k, p := range req.GetParameters() {
		if k != ConfigParameter {
			return nil, status.Errorf(codes.InvalidArgument, "parameter %q: not supported; the only load parameter is %q", k, ConfigParameter)
		}
		switch v := p.GetParameterChoice().(type) {
		case *inference.ModelRepositoryParameter_StringParam:
			override = []byte(v.StringParam)
		case *inference.ModelRepositoryParameter_BytesParam:
			override = v.BytesParam
		default:
			return nil, status.Errorf(codes.InvalidArgument, "parameter %q: must be a string_param holding config.yaml text", k)
		}
		if len(override) == 0 {
			return nil, status.Errorf(codes.InvalidArgument, "parameter %q: empty config override", k)
		}
	}
	if err := s.repo.LoadModel(ctx, name, override); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &inference.RepositoryModelLoadResponse{}, nil
}

func (s *service) RepositoryModelUnload(ctx context.Context, req *inference.RepositoryModelUnloadRequest) (*inference.RepositoryModelUnloadResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	name, err := repositoryModelName(req.GetModelName(), req.GetRepositoryName())
	if err != nil {
		return nil, err
	}
	for k := range req.GetParameters() {
		if k != unloadDependentsParameter {
			return nil, status.Errorf(codes.InvalidArgument, "parameter %q: not supported", k)
		}
	}
	if err := s.repo.UnloadModel(name); err != nil {
		return nil, transport.GRPCError(err)
	}
	return &inference.RepositoryModelUnloadResponse{}, nil
}

// repositoryModelName picks the model of a load or unload request. Clients
// built from the KServe proto put the model name in field 1, which this
// proto calls repository_name, so that field stands in when model_name is
// empty.
func repositoryModelName(model, repo string) (string, error) {
	if model != "" {
		return model, nil
	}
	if repo != "" {
		return repo, nil
	}
	return "", status.Error(codes.InvalidArgument, "model_name: a model name is required")
}

// authorize applies the management API's rule (guard.AuthorizeAdmin)
// to the caller's metadata and peer address.
func (s *service) authorize(ctx context.Context) error {
	var header string
	if v := metadata.ValueFromIncomingContext(ctx, AuthorizationMetadata); len(v) > 0 {
		header = v[0]
	}
	var remote net.Addr
	if p, ok := peer.FromContext(ctx); ok {
		remote = p.Addr
	}
	if err := guard.AuthorizeAdmin(s.cfg.AdminToken, s.cfg.AdminAllowLoopback, header, remote); err != nil {
		return transport.GRPCError(err)
	}
	return nil
}

func (s *service) ModelInfer(ctx context.Context, req *inference.ModelInferRequest) (resp *inference.ModelInferResponse, err error) {
	start := time.Now()
	var cause error // err before its conversion to a status, for Observe
	id := requestID(ctx, req)
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, panicError(s.log, "ModelInfer", p)
			cause = err
		}
		s.observe(resp, id, cause, time.Since(start))
	}()
	_ = grpc.SetHeader(ctx, metadata.Pairs(transport.RequestIDHeader, id))
	resp, cause = s.infer(ctx, req, id, start)
	if cause != nil {
		return nil, transport.GRPCError(cause)
	}
	return resp, nil
}

// call is one inference request on its way through the serving core. It
// is the request's metadata too: the serving core looks the model's sticky
// key up in it during Infer. inputs holds the decoded tensors of a request
// with few, saving them an allocation of their own.
type call struct {
	req    serving.Request
	ctx    context.Context
	params map[string]*inference.InferParameter
	inputs [4]tensor.Tensor
}

// Get returns the incoming metadata value of key, else the request
// parameter of that name (a string, or an integer as its decimal text).
func (c *call) Get(key string) string {
	if v := metadataValue(c.ctx, key); v != "" {
		return v
	}
	if p, ok := c.params[key]; ok {
		switch v := p.GetParameterChoice().(type) {
		case *inference.InferParameter_StringParam:
			return v.StringParam
		case *inference.InferParameter_Int64Param:
			return strconv.FormatInt(v.Int64Param, 10)
		case *inference.InferParameter_Uint64Param:
			return strconv.FormatUint(v.Uint64Param, 10)
		}
	}
	return ""
}

// requestID settles a request's id: its id field, else its x-request-id
// metadata, else a new one.
func requestID(ctx context.Context, req *inference.ModelInferRequest) string {
	return transport.RequestID(req.GetId(), metadataValue(ctx, transport.RequestIDHeader))
}

// infer runs one request under its settled id. Every request reaches
// the serving core exactly once, through Infer or, when it fails here
// first, Refuse, so its error is labelled. The error is classified (see
// classify) but not yet a status, so callers can both report it and count
// it.
func (s *service) infer(ctx context.Context, req *inference.ModelInferRequest, id string, start time.Time) (*inference.ModelInferResponse, error) {
	c := &call{ctx: ctx, params: req.GetParameters(), req: serving.Request{
		Model:    req.GetModelName(),
		Version:  req.GetModelVersion(),
		ID:       id,
		Protocol: transport.ProtocolGRPC,
		Arrival:  start,
	}}
	c.req.Metadata = c
	return s.run(ctx, req, c)
}

func (s *service) run(ctx context.Context, req *inference.ModelInferRequest, c *call) (*inference.ModelInferResponse, error) {
	sreq := &c.req
	if sreq.Model == "" {
		return nil, s.inf.Refuse(sreq, tensor.Invalidf("model_name: a model name is required"))
	}
	if s.cfg.RateLimiter != nil {
		if err := s.cfg.RateLimiter.Check(clientKey(ctx)); err != nil {
			return nil, s.inf.Refuse(sreq, err)
		}
	}
	timeout, routingKey, err := requestParams(c.params)
	if err != nil {
		return nil, s.inf.Refuse(sreq, err)
	}
	sreq.RoutingKey = routingKey
	if sreq.Sequence, err = sequenceParams(c.params); err != nil {
		return nil, s.inf.Refuse(sreq, err)
	}
	ctx, cancel, err := transport.WithTimeoutMicros(ctx, timeout)
	if err != nil {
		return nil, s.inf.Refuse(sreq, err)
	}
	defer cancel()
	if sreq.Inputs, err = decodeInputs(req, s.cfg.Limits, c.inputs[:]); err != nil {
		return nil, s.inf.Refuse(sreq, err)
	}
	if sreq.Outputs, err = requestedOutputs(req.GetOutputs()); err != nil {
		return nil, s.inf.Refuse(sreq, err)
	}
	resp, err := s.inf.Infer(ctx, sreq)
	if err != nil {
		err = classify(ctx, err)
		if code, _ := transport.Status(err); code == codes.Internal {
			s.log.Warn("inference failed", zap.String("model", sreq.Model), zap.String("version", sreq.Version),
				zap.String("request_id", sreq.ID), zap.Error(err))
		}
		return nil, err
	}
	return encodeResponse(resp, sreq.ID), nil
}

// deadlineSlack is how close to its deadline a call's cancellation counts
// as the deadline passing: a client whose deadline fires cancels the call,
// and that cancellation may reach the server a moment before the server's
// own copy of the deadline expires.
const deadlineSlack = 20 * time.Millisecond

// classify makes a failure that a client's cancellation or deadline caused
// read as that, whatever the layer that noticed it reported: a model run cut
// short by a cancelled context is the client's doing, not an internal error.
func classify(ctx context.Context, err error) error {
	if ctx.Err() == nil || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < deadlineSlack {
			return fmt.Errorf("the call's deadline passed: %w", context.DeadlineExceeded)
		}
		return err
	}
	if code, _ := transport.Status(err); code != codes.Internal {
		return err
	}
	return fmt.Errorf("%w: %w", context.Cause(ctx), err)
}

// toStatus is classify followed by the status conversion, for the RPCs that
// do not count requests.
func (s *service) toStatus(ctx context.Context, err error) error {
	return transport.GRPCError(classify(ctx, err))
}

// observe reports one finished request to Config.Observe, with the labels
// the serving core answered with.
func (s *service) observe(resp *inference.ModelInferResponse, id string, err error, d time.Duration) {
	model, version, code := "", "", 200
	if err != nil {
		_, code = transport.Status(err)
		model, version = serving.Labels(err)
	} else {
		model, version = resp.GetModelName(), resp.GetModelVersion()
	}
	s.cfg.Observe(model, version, id, code, d)
}

// requestParams reads the request parameters the server understands: the
// queue timeout in microseconds and the sticky routing key. Others are
// ignored, as the protocol leaves them to the server.
func requestParams(params map[string]*inference.InferParameter) (timeout int64, routingKey string, err error) {
	if p, ok := params[transport.TimeoutParameter]; ok {
		switch v := p.GetParameterChoice().(type) {
		case *inference.InferParameter_Int64Param:
			timeout = v.Int64Param
		case *inference.InferParameter_Uint64Param:
			if v.Uint64Param > math.MaxInt64 {
				return 0, "", transport.ParamError(transport.TimeoutParameter, v.Uint64Param)
			}
			timeout = int64(v.Uint64Param)
		default:
			return 0, "", tensor.Invalidf("parameter %q: must be an int64_param in microseconds", transport.TimeoutParameter)
		}
	}
	if p, ok := params[transport.RoutingKeyParameter]; ok {
		switch v := p.GetParameterChoice().(type) {
		case *inference.InferParameter_StringParam:
			routingKey = v.StringParam
		case *inference.InferParameter_Int64Param:
			routingKey = strconv.FormatInt(v.Int64Param, 10)
		case *inference.InferParameter_Uint64Param:
			routingKey = strconv.FormatUint(v.Uint64Param, 10)
		default:
			return 0, "", tensor.Invalidf("parameter %q: must be a string_param", transport.RoutingKeyParameter)
		}
	}
	return timeout, routingKey, nil
}

// sequenceParams reads the sequence_id (int64, uint64 or string),
// sequence_start and sequence_end (bool) parameters as Triton's clients
// send them.
func sequenceParams(params map[string]*inference.InferParameter) (serving.Sequence, error) {
	var seq serving.Sequence
	if p, ok := params[transport.SequenceIDParameter]; ok {
		var err error
		switch v := p.GetParameterChoice().(type) {
		case *inference.InferParameter_Int64Param:
			seq.ID, err = transport.SequenceIntID(v.Int64Param)
		case *inference.InferParameter_Uint64Param:
			seq.ID, err = transport.SequenceUintID(v.Uint64Param)
		case *inference.InferParameter_StringParam:
			seq.ID, err = transport.SequenceStringID(v.StringParam)
		default:
			err = tensor.Invalidf("parameter %q: must be an int64_param, uint64_param or string_param", transport.SequenceIDParameter)
		}
		if err != nil {
			return seq, err
		}
	}
	var err error
	if seq.Start, err = boolParam(params, transport.SequenceStartParameter); err != nil {
		return seq, err
	}
	if seq.End, err = boolParam(params, transport.SequenceEndParameter); err != nil {
		return seq, err
	}
	return seq, nil
}

// boolParam reads an optional bool_param.
func boolParam(params map[string]*inference.InferParameter, name string) (bool, error) {
	p, ok := params[name]
	if !ok {
		return false, nil
	}
	v, ok := p.GetParameterChoice().(*inference.InferParameter_BoolParam)
	if !ok {
		return false, tensor.Invalidf("parameter %q: must be a bool_param", name)
	}
	return v.BoolParam, nil
}

// requestedOutputs lists the outputs a request asks for; nil means all.
func requestedOutputs(outs []*inference.ModelInferRequest_InferRequestedOutputTensor) ([]string, error) {
	if len(outs) == 0 {
		return nil, nil
	}
	names := make([]string, len(outs))
	for i, o := range outs {
		if _, ok := o.GetParameters()["classification"]; ok {
			return nil, tensor.Invalidf("output %q: parameter \"classification\" is not supported", o.GetName())
		}
		names[i] = o.GetName()
	}
	return names, nil
}

// metadataValue returns the first value of an incoming metadata key, or "".
func metadataValue(ctx context.Context, key string) string {
	if v := metadata.ValueFromIncomingContext(ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}
