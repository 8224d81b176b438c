package batcher

import (
	"container/list"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// Reasons a sequence ends: the reason label of
// onnxserve_sequences_ended_total.
const (
	// EndRequested: a request carried sequence_end.
	EndRequested = "end"
	// EndIdle: no request came for SequenceLimits.MaxIdle.
	EndIdle = "idle"
	// EndEvicted: a new sequence needed its place at MaxSequences.
	EndEvicted = "evicted"
	// EndUnloaded: the version it ran on left the server.
	EndUnloaded = "unloaded"
)

// endFailedStart marks a sequence whose first request failed: it never
// started, so it is not counted as ended.
const endFailedStart = "its first request failed"

// rememberEnded is how many ended sequence ids the store remembers, so a
// late continuation hears why its sequence is gone.
const rememberEnded = 4096

// SequenceOwner is what a sequence is bound to: the model version it started
// on, which serves every request of the sequence. The store calls
// SequenceEnded exactly once per started sequence, when it ends; it must not
// block.
type SequenceOwner interface {
	// SequenceLabel is the version label of the metrics.
	SequenceLabel() string
	SequenceEnded()
}

// SequenceControl is the sequence part of one request, as Triton's clients
// send it in the sequence_id, sequence_start and sequence_end parameters.
type SequenceControl struct {
	// ID names the sequence; "" means the request carries none.
	ID string
	// Start begins the sequence with its initial state.
	Start bool
	// End ends the sequence once this request is answered.
	End bool
}

// SequenceLimits bound a model's sequences.
type SequenceLimits struct {
	// MaxIdle ends a sequence that had no request for this long. > 0.
	MaxIdle time.Duration
	// MaxSequences bounds the active sequences; a new one beyond it evicts
	// the least recently used sequence that has no request running or
	// waiting, or is refused with ErrOverloaded when there is none. > 0.
	MaxSequences int
}

// sequence is one active sequence. owner and states are written by the
// holder of turn; the rest under Sequences.mu.
type sequence struct {
	id     string
	owner  SequenceOwner
	states []tensor.Tensor
	// turn is held (a value in it) by the one request of the sequence that
	// runs; the others wait to send, in arrival order.
	turn  chan struct{}
	users int // requests holding or waiting for turn
	last  time.Time
	ended string
	elem  *list.Element
}

// Sequences is the sequence store of one model: which sequences are
// active, on which version each started, their stored state, and the turn
// that runs a sequence's requests strictly one at a time. It moves tensors
// only: what the states feed and how they are stacked is its caller's
// business. Safe for concurrent use.
type Sequences struct {
	model   string
	metrics *SequenceMetrics

	mu        sync.Mutex
	lim       SequenceLimits
	live      map[string]*sequence
	lru       *list.List // of *sequence, least recently used first
	gone      map[string]string
	goneOrder []string
	goneNext  int
	active    map[string]int // by version label

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// NewSequences starts the store of one model and its idle janitor; Close
// stops it. m may be nil for no metrics.
func NewSequences(model string, lim SequenceLimits, m *SequenceMetrics) *Sequences {
	s := &Sequences{
		model:   model,
		metrics: m,
		lim:     lim,
		live:    map[string]*sequence{},
		lru:     list.New(),
		gone:    map[string]string{},
		active:  map[string]int{},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go s.janitor()
	return s
}

// SetLimits replaces the limits; they apply from the next request and scan.
func (s *Sequences) SetLimits(lim SequenceLimits) {
	s.mu.Lock()
	s.lim = lim
	s.mu.Unlock()
}

// Close stops the idle janitor and waits for it. Sequences still active
// stay until EndOwner ends them.
func (s *Sequences) Close() {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
}

// Turn is one request's turn in its sequence: while it is held no other
// request of the sequence runs. Finish must be called exactly once. Not
// safe for concurrent use.
type Turn struct {
	s   *Sequences
	seq *sequence
	ctl SequenceControl
}

// Owner returns the version the sequence started on.
func (t *Turn) Owner() SequenceOwner { return t.seq.owner }

// States returns the sequence's stored state, in the order its owner gave
// them at the start; the caller must not modify them.
func (t *Turn) States() []tensor.Tensor { return t.seq.states }

// Finish ends the turn. With err nil, next (when not nil) becomes the
// stored state; with an error the stored state is left as it was, so a
// failed request can be sent again. A request with End ends the sequence
// either way; a failed first request leaves no sequence behind.
func (t *Turn) Finish(next []tensor.Tensor, err error) {
	s, seq := t.s, t.seq
	s.mu.Lock()
	seq.users--
	seq.last = time.Now()
	if seq.elem != nil {
		s.lru.MoveToBack(seq.elem)
	}
	if err == nil && next != nil {
		seq.states = next
	}
	switch {
	case t.ctl.Start && err != nil && seq.ended == "":
		s.endLocked(seq, endFailedStart)
	case t.ctl.End:
		s.endLocked(seq, EndRequested)
	}
	s.mu.Unlock()
	<-seq.turn
}

// Begin waits for the request's turn in its sequence. For a start, the
// sequence must not be active; start is called (once, without the store's
// lock) to bind it to a version and give its initial state, and its error
// is returned as is. For a continuation the sequence must be active. It
// fails with an error wrapping tensor.ErrInvalid naming the parameter for a
// missing id, a start of an active sequence or a continuation of one that
// is not active; with ErrOverloaded when a start finds MaxSequences active
// and none evictable; and with ctx's error when ctx ends while waiting.
func (s *Sequences) Begin(ctx context.Context, ctl SequenceControl, start func() (SequenceOwner, []tensor.Tensor, error)) (*Turn, error) {
	if ctl.ID == "" {
		return nil, tensor.Invalidf("parameter \"sequence_id\": model %q keeps sequence state (sequence_batching); every request needs a sequence_id", s.model)
	}
	s.mu.Lock()
	if ctl.Start {
		return s.begin(ctl, start)
	}
	seq, ok := s.live[ctl.ID]
	if !ok {
		err := s.notActive(ctl.ID)
		s.mu.Unlock()
		return nil, err
	}
	seq.users++
	s.lru.MoveToBack(seq.elem)
	s.mu.Unlock()
	select {
	case seq.turn <- struct{}{}:
	case <-ctx.Done():
		s.mu.Lock()
		seq.users--
		s.mu.Unlock()
		return nil, ctx.Err()
	}
	s.mu.Lock()
	if seq.ended != "" {
		seq.users--
		s.mu.Unlock()
		<-seq.turn
		return nil, s.endedError(ctl.ID, seq.ended)
	}
	s.mu.Unlock()
	return &Turn{s: s, seq: seq, ctl: ctl}, nil
}

// begin starts a sequence; s.mu is held and is released here.
func (s *Sequences) begin(ctl SequenceControl, start func() (SequenceOwner, []tensor.Tensor, error)) (*Turn, error) {
	if _, ok := s.live[ctl.ID]; ok {
		s.mu.Unlock()
		return nil, tensor.Invalidf("parameter \"sequence_start\": sequence_id %s is already active; end it with sequence_end or start another id", quoteID(ctl.ID))
	}
	if len(s.live) >= s.lim.MaxSequences {
		var victim *sequence
		for e := s.lru.Front(); e != nil; e = e.Next() {
			if seq := e.Value.(*sequence); seq.users == 0 {
				victim = seq
				break
			}
		}
		if victim == nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("model %q: %d sequences are active (sequence_batching.max_sequences) and every one is running: %w", s.model, s.lim.MaxSequences, ErrOverloaded)
		}
		s.endLocked(victim, EndEvicted)
	}
	seq := &sequence{id: ctl.ID, turn: make(chan struct{}, 1), users: 1, last: time.Now()}
	seq.turn <- struct{}{}
	seq.elem = s.lru.PushBack(seq)
	s.live[ctl.ID] = seq
	delete(s.gone, ctl.ID)
	s.mu.Unlock()

	owner, states, err := start()
	s.mu.Lock()
	if err != nil {
		seq.users--
		s.endLocked(seq, endFailedStart)
		s.mu.Unlock()
		<-seq.turn
		return nil, err
	}
	seq.owner, seq.states = owner, states
	if seq.ended == "" {
		label := owner.SequenceLabel()
		s.active[label]++
		s.metrics.setActive(s.model, label, s.active[label])
	} else {
		// Ended while starting (its version unloaded): nobody else will
		// release the owner.
		owner.SequenceEnded()
	}
	s.mu.Unlock()
	return &Turn{s: s, seq: seq, ctl: ctl}, nil
}

// endLocked ends seq for reason; s.mu is held.
func (s *Sequences) endLocked(seq *sequence, reason string) {
	if seq.ended != "" {
		return
	}
	seq.ended = reason
	if s.live[seq.id] == seq {
		delete(s.live, seq.id)
	}
	if seq.elem != nil {
		s.lru.Remove(seq.elem)
		seq.elem = nil
	}
	s.remember(seq.id, reason)
	if seq.owner == nil {
		return
	}
	label := seq.owner.SequenceLabel()
	s.active[label]--
	s.metrics.setActive(s.model, label, s.active[label])
	if reason != endFailedStart {
		s.metrics.ended(s.model, label, reason)
	}
	seq.owner.SequenceEnded()
}

// remember records why id ended, forgetting the oldest beyond
// rememberEnded.
func (s *Sequences) remember(id, reason string) {
	if reason == endFailedStart {
		return
	}
	if len(s.goneOrder) < rememberEnded {
		s.goneOrder = append(s.goneOrder, id)
	} else {
		old := s.goneOrder[s.goneNext]
		if s.gone[old] != "" {
			delete(s.gone, old)
		}
		s.goneOrder[s.goneNext] = id
		s.goneNext = (s.goneNext + 1) % rememberEnded
	}
	s.gone[id] = reason
}

func (s *Sequences) notActive(id string) error {
	if reason, ok := s.gone[id]; ok {
		return s.endedError(id, reason)
	}
	return tensor.Invalidf("parameter \"sequence_id\": no active sequence %s (never started, or ended before the server restarted); start one with sequence_start", quoteID(id))
}

func (s *Sequences) endedError(id, reason string) error {
	why := reason
	switch reason {
	case EndRequested:
		why = "a request ended it with sequence_end"
	case EndIdle:
		why = fmt.Sprintf("idle longer than sequence_batching.max_sequence_idle %v", s.lim.MaxIdle)
	case EndEvicted:
		why = fmt.Sprintf("evicted for a new sequence at sequence_batching.max_sequences %d", s.lim.MaxSequences)
	case EndUnloaded:
		why = "the version it ran on was unloaded"
	}
	return tensor.Invalidf("parameter \"sequence_id\": sequence %s has ended (%s); start a new one with sequence_start", quoteID(id), why)
}

func quoteID(id string) string {
	if strings.Trim(id, "0123456789") == "" {
		return id
	}
	return fmt.Sprintf("%q", id)
}

// EndOwner ends every sequence bound to owner with reason (EndUnloaded when
// its version leaves the server).
func (s *Sequences) EndOwner(owner SequenceOwner, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seq := range s.live {
		if seq.owner == owner {
			s.endLocked(seq, reason)
		}
	}
}

// EndAll ends every active sequence with reason (EndUnloaded at shutdown).
func (s *Sequences) EndAll(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seq := range s.live {
		s.endLocked(seq, reason)
	}
}

// Active returns the number of active sequences.
func (s *Sequences) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// janitor ends idle sequences. It checks about four times per MaxIdle, at
// most once a second, so a sequence ends at most a quarter of MaxIdle late.
func (s *Sequences) janitor() {
	defer close(s.done)
	t := time.NewTimer(s.scanEvery())
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.expire(time.Now())
			t.Reset(s.scanEvery())
		}
	}
}

func (s *Sequences) scanEvery() time.Duration {
	s.mu.Lock()
	d := s.lim.MaxIdle / 4
	s.mu.Unlock()
	return min(max(d, 5*time.Millisecond), time.Second)
}

// expire ends the sequences idle for MaxIdle at now.
func (s *Sequences) expire(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for e := s.lru.Front(); e != nil; {
		next := e.Next()
		seq := e.Value.(*sequence)
		if now.Sub(seq.last) < s.lim.MaxIdle {
			break
		}
		if seq.users == 0 {
			s.endLocked(seq, EndIdle)
		}
		e = next
	}
}

// SequenceMetrics holds the sequence series of every model in one
// process. Safe for concurrent use.
type SequenceMetrics struct {
	active   *prometheus.GaugeVec
	endedVec *prometheus.CounterVec
}

// NewSequenceMetrics creates the sequence metrics and registers them on
// reg (nil: not registered).
func NewSequenceMetrics(reg prometheus.Registerer) (*SequenceMetrics, error) {
	m := &SequenceMetrics{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "onnxserve_sequences_active",
			Help: "Sequences active now (sequence_batching), by the version they started on.",
		}, []string{"model", "version"}),
		endedVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onnxserve_sequences_ended_total",
			Help: "Sequences ended, by reason: end (sequence_end), idle, evicted (max_sequences), unloaded.",
		}, []string{"model", "version", "reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.active, m.endedVec} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *SequenceMetrics) setActive(model, version string, n int) {
	if m != nil {
		m.active.WithLabelValues(model, version).Set(float64(n))
	}
}

func (m *SequenceMetrics) ended(model, version, reason string) {
	if m != nil {
		m.endedVec.WithLabelValues(model, version, reason).Inc()
	}
}

// DeleteVersion drops a version's series once it has left the server.
func (m *SequenceMetrics) DeleteVersion(model, version string) {
	if m == nil {
		return
	}
	m.active.DeleteLabelValues(model, version)
	m.endedVec.DeletePartialMatch(prometheus.Labels{"model": model, "version": version})
}
