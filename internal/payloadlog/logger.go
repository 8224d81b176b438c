package payloadlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/onnxserve/onnxserve/internal/serving"
	"github.com/onnxserve/onnxserve/internal/tensor"
)

// The CloudEvents attributes of payload events, as KServe's inference
// logger (pkg/logger) sends them, so sinks built for it read ours.
const (
	// TypeRequest is the ce-type of a request event.
	TypeRequest = "org.kubeflow.serving.inference.request"
	// TypeResponse is the ce-type of a response event.
	TypeResponse = "org.kubeflow.serving.inference.response"
	// TypeFeedback is the ce-type of a feedback event: ground truth posted
	// for a logged request, under the request's id.
	TypeFeedback = "org.kubeflow.serving.inference.feedback"

	// Extension attributes (lowercase alphanumerics, as CloudEvents
	// requires): KServe's names, and modelversion, the version that
	// answered, which KServe leaves to the body.
	AttrInferenceService = "inferenceservicename"
	AttrNamespace        = "namespace"
	AttrComponent        = "component"
	AttrEndpoint         = "endpoint"
	AttrRecordedTime     = "recordedtime"
	AttrModelVersion     = "modelversion"

	// Component is the ce-component of every event: the server is the
	// predictor in KServe's terms.
	Component = "predictor"
	// Endpoint is the ce-endpoint of every event; KServe writes default or
	// canary, and canary rollouts are versions of one model here.
	Endpoint = "default"
	// ContentType is the datacontenttype of every event body.
	ContentType = "application/json"
)

// Config holds the Logger's settings.
type Config struct {
	// Source is the ce-source of every event (a URI reference).
	Source string
	// Namespace is the ce-namespace of every event; "" for none.
	Namespace string
	// QueueSize bounds each sink's queue of events. [1024]
	QueueSize int
}

// DefaultQueueSize is a sink's queue bound when Config.QueueSize is 0.
const DefaultQueueSize = 1024

// Sink delivers payload events: a file, an HTTP receiver. Write runs on
// the sink's own goroutine, one event at a time, and may block; it must
// honour ctx, which ends at shutdown's deadline. The event is read-only.
// Close releases the sink once no Write runs.
type Sink interface {
	Write(ctx context.Context, ev *event.Event) error
	Close() error
}

// Logger is the payload-log tap: it samples answered requests per model
// and hands their events to every sink. It is safe for concurrent use.
type Logger struct {
	cfg      Config
	log      *zap.Logger
	policies policies
	sinks    []*sinkQueue
}

// New returns a Logger writing to sinks, each under its name (the sink
// label of its metrics, such as "file" or "http"), with its collectors
// registered on reg. The sinks are the Logger's from then on: Close closes
// them.
func New(cfg Config, sinks map[string]Sink, log *zap.Logger, reg prometheus.Registerer) (*Logger, error) {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	l := &Logger{cfg: cfg, log: log}
	for name, s := range sinks {
		l.sinks = append(l.sinks, newSinkQueue(name, s, cfg.QueueSize, m, log.With(zap.String("sink", name))))
	}
	return l, nil
}

// SetPolicy sets model's payload_log policy; nil or a zero sample stops
// logging it. cmd/serve calls it from the serving core's OnConfig hook.
func (l *Logger) SetPolicy(model string, p *Policy) { l.policies.set(model, p) }

// Entry is what the tap keeps of one sampled request: copies only.
type Entry struct {
	model, version, id, protocol string
	mode                         Mode
	arrival, answered            time.Time
	inputs, outputs              []tensor.Tensor
	err                          string
}

// Keep samples r by its model's policy and copies what the events need:
// the inputs not redacted (for request events) and the outputs (for
// response events). An unsampled request costs one map lookup and one
// random draw, and keeps nothing. Shadow copies are never logged: their
// answers reached no one.
func (l *Logger) Keep(r *serving.Record) (*Entry, bool) {
	if r.Arm != serving.ArmPrimary || r.Model == "" {
		return nil, false
	}
	p := l.policies.get(r.Model)
	if p == nil || !p.sampled() {
		return nil, false
	}
	e := &Entry{model: r.Model, version: r.Version, id: r.ID, protocol: r.Protocol, mode: p.mode,
		arrival: r.Arrival, answered: time.Now()}
	if p.mode != ModeResponse {
		e.inputs = copyTensors(r.Inputs, p.redact)
	}
	if p.mode != ModeRequest {
		e.outputs = copyTensors(r.Outputs, nil)
		if r.Err != nil {
			e.err = r.Err.Error()
		}
	}
	return e, true
}

// Consume builds e's events and offers each to every sink's queue.
func (l *Logger) Consume(e *Entry) {
	if e.mode != ModeResponse {
		body, err := json.Marshal(v2Request{ID: e.id, Inputs: toV2(e.inputs)})
		l.offer(e, TypeRequest, e.arrival, body, err)
	}
	if e.mode != ModeRequest {
		resp := v2Response{ModelName: e.model, ModelVersion: e.version, ID: e.id, Error: e.err}
		if e.err == "" {
			resp.Outputs = toV2(e.outputs)
		}
		body, err := json.Marshal(resp)
		l.offer(e, TypeResponse, e.answered, body, err)
	}
}

func (l *Logger) offer(e *Entry, typ string, at time.Time, body []byte, err error) {
	if err != nil {
		// Only plain data is marshalled; this is a bug, not a sink's fault.
		l.log.Error("payload event not encoded", zap.String("model", e.model), zap.String("id", e.id), zap.Error(err))
		return
	}
	ev := l.event(typ, e.id, e.model, e.version, at, body)
	for _, s := range l.sinks {
		s.offer(ev)
	}
}

// feedbackBody is the body of a feedback event.
type feedbackBody struct {
	ID           string          `json:"id"`
	ModelName    string          `json:"model_name"`
	ModelVersion string          `json:"model_version,omitempty"`
	GroundTruth  json.RawMessage `json:"ground_truth"`
}

// LogFeedback logs the ground truth posted for request id of model
// (groundTruth: a JSON array, one value per row of the request; version:
// the version it scored, "" when unknown) as a feedback event under the
// request's id, so every sink can join it to the request's events. Only
// models with a payload_log policy are logged; feedback for a request that
// was not sampled is logged too, and export leaves it out. It never
// blocks; call it once the feedback was accepted.
func (l *Logger) LogFeedback(model, version, id string, groundTruth json.RawMessage) {
	if l.policies.get(model) == nil {
		return
	}
	body, err := json.Marshal(feedbackBody{ID: id, ModelName: model, ModelVersion: version, GroundTruth: groundTruth})
	if err != nil {
		l.log.Debug("feedback not logged", zap.String("model", model), zap.String("id", id), zap.Error(err))
		return
	}
	ev := l.event(TypeFeedback, id, model, version, time.Now(), body)
	for _, s := range l.sinks {
		s.offer(ev)
	}
}

// event builds one CloudEvent with KServe's attributes.
func (l *Logger) event(typ, id, model, version string, at time.Time, body []byte) *event.Event {
	ev := event.New(event.CloudEventsVersionV1)
	ev.SetID(id)
	ev.SetType(typ)
	ev.SetSource(l.cfg.Source)
	ev.SetTime(at)
	ev.SetExtension(AttrRecordedTime, time.Now())
	ev.SetExtension(AttrInferenceService, model)
	ev.SetExtension(AttrNamespace, l.cfg.Namespace)
	ev.SetExtension(AttrComponent, Component)
	ev.SetExtension(AttrEndpoint, Endpoint)
	ev.SetExtension(AttrModelVersion, version)
	ev.SetDataContentType(ContentType)
	ev.DataEncoded = body
	return &ev
}

// Close stops every sink: what waits in their queues is written until ctx
// ends, the rest counted as dropped. Call it after the serving core's
// Close, which consumed what the tap had queued.
func (l *Logger) Close(ctx context.Context) error {
	var errs []error
	for _, s := range l.sinks {
		if err := s.close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("payload log sink %s: %w", s.name, err))
		}
	}
	return errors.Join(errs...)
}
