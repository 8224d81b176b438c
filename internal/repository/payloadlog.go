package repository

import (
	"fmt"
	"slices"

	"gopkg.in/yaml.v3"
)

// The modes accepted in payload_log.mode, as KServe's inference logger
// names them.
const (
	// PayloadLogAll logs each sampled request and its response.
	PayloadLogAll = "all"
	// PayloadLogRequest logs the request only.
	PayloadLogRequest = "request"
	// PayloadLogResponse logs the response only.
	PayloadLogResponse = "response"
)

// PayloadLog is the payload_log block: which answered requests are written
// to the payload log sinks (files, CloudEvents) for audit and retraining.
// Fields absent from a present block take their defaults. A plain value,
// safe for concurrent reads.
type PayloadLog struct {
	// Sample is the share of requests logged, 0..1. [0]
	Sample float64 `yaml:"sample"`
	// Mode is PayloadLogAll, PayloadLogRequest or PayloadLogResponse.
	// [PayloadLogAll]
	Mode string `yaml:"mode"`
	// Redact names inputs never written. Each must be an input of the
	// model; the serving core checks that when a version loads, since only
	// the model file declares its inputs.
	Redact []string `yaml:"redact,omitempty"`
}

// Clone returns a deep copy of l.
func (l PayloadLog) Clone() PayloadLog {
	l.Redact = slices.Clone(l.Redact)
	return l
}

func (l *PayloadLog) validate(ch *checker) {
	if !(l.Sample >= 0 && l.Sample <= 1) {
		ch.addf("payload_log.sample", "must be in 0..1, got %v", l.Sample)
	}
	switch l.Mode {
	case PayloadLogAll, PayloadLogRequest, PayloadLogResponse:
	default:
		ch.addf("payload_log.mode", "must be one of %s, %s, %s, got %q", PayloadLogRequest, PayloadLogResponse, PayloadLogAll, l.Mode)
	}
	seen := make(map[string]bool, len(l.Redact))
	for i, name := range l.Redact {
		field := fmt.Sprintf("payload_log.redact[%d]", i)
		switch {
		case name == "":
			ch.addf(field, "must name an input, got an empty string")
		case seen[name]:
			ch.addf(field, "input %q is listed twice", name)
		}
		seen[name] = true
	}
}

// payloadLog decodes the payload_log block.
func (p *parser) payloadLog(n *yaml.Node, path string, l *PayloadLog) {
	p.mapping(n, path, fields{
		"sample": func(v *yaml.Node, path string) { p.shareField(v, path, &l.Sample) },
		"mode":   func(v *yaml.Node, path string) { p.stringField(v, path, &l.Mode) },
		"redact": func(v *yaml.Node, path string) {
			out := []string{}
			if p.sequence(v, path, func(v *yaml.Node, field string) {
				var s string
				p.stringField(v, field, &s)
				out = append(out, s)
			}) {
				l.Redact = out
			}
		},
	})
}

// shareField decodes a number such as a sampling share; an integer (0, 1)
// is a number too.
func (p *parser) shareField(n *yaml.Node, path string, dst *float64) {
	n = resolveAlias(n)
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") {
		p.typeErr(n, path, "a number")
		return
	}
	if err := n.Decode(dst); err != nil {
		p.typeErr(n, path, "a number")
	}
}
