package payloadlog

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// Mode says which events of a sampled inference are logged, as KServe's
// inference logger names them.
type Mode uint8

// The modes.
const (
	// ModeAll logs the request and the response.
	ModeAll Mode = iota
	// ModeRequest logs the request only.
	ModeRequest
	// ModeResponse logs the response only.
	ModeResponse
)

// ParseMode reads a mode's config name: all, request or response.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "all", "":
		return ModeAll, nil
	case "request":
		return ModeRequest, nil
	case "response":
		return ModeResponse, nil
	}
	return 0, fmt.Errorf("payload log mode %q: want request, response or all", s)
}

// Policy is one model's payload_log setting.
type Policy struct {
	// Sample is the share of requests logged, 0..1.
	Sample float64
	// Mode says which events are logged.
	Mode Mode
	// Redact names inputs never written.
	Redact []string
}

// policy is a Policy ready for the request path.
type policy struct {
	sample float64
	mode   Mode
	redact map[string]bool
}

// sampled draws whether one request is logged.
func (p *policy) sampled() bool {
	switch {
	case p.sample >= 1:
		return true
	case p.sample <= 0:
		return false
	}
	return rand.Float64() < p.sample
}

// policies maps model names to policies. The request path reads it with
// one atomic load; setters copy it.
type policies struct {
	mu  sync.Mutex
	cur atomic.Pointer[map[string]*policy]
}

func (ps *policies) get(model string) *policy {
	m := ps.cur.Load()
	if m == nil {
		return nil
	}
	return (*m)[model]
}

// set installs p for model; nil, or a zero sample, removes it.
func (ps *policies) set(model string, p *Policy) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	next := map[string]*policy{}
	if cur := ps.cur.Load(); cur != nil {
		next = maps.Clone(*cur)
	}
	if p == nil || !(p.Sample > 0) {
		delete(next, model)
	} else {
		np := &policy{sample: p.Sample, mode: p.Mode, redact: make(map[string]bool, len(p.Redact))}
		for _, r := range p.Redact {
			np.redact[r] = true
		}
		next[model] = np
	}
	ps.cur.Store(&next)
}
