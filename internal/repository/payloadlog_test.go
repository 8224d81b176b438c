package repository

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestParsePayloadLog(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want *PayloadLog
	}{
		{"absent", "max_batch_size: 0", nil},
		{"empty block takes defaults", "payload_log: {}", &PayloadLog{Mode: PayloadLogAll}},
		{"issue example", "payload_log:\n  sample: 0.01\n  mode: all\n  redact: [SSN]\n", &PayloadLog{Sample: 0.01, Mode: PayloadLogAll, Redact: []string{"SSN"}}},
		{"integer sample", "payload_log: {sample: 1, mode: request}", &PayloadLog{Sample: 1, Mode: PayloadLogRequest}},
		{"response mode", "payload_log: {sample: 0.5, mode: response, redact: []}", &PayloadLog{Sample: 0.5, Mode: PayloadLogResponse, Redact: []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.yaml))
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if !reflect.DeepEqual(c.PayloadLog, tt.want) {
				t.Fatalf("payload_log = %+v, want %+v", c.PayloadLog, tt.want)
			}
		})
	}
}

func TestParsePayloadLogBad(t *testing.T) {
	tests := []struct {
		name, yaml, field, msg string
	}{
		{"sample above one", "payload_log: {sample: 1.5}", "payload_log.sample", "must be in 0..1, got 1.5"},
		{"negative sample", "payload_log: {sample: -0.1}", "payload_log.sample", "got -0.1"},
		{"sample as a string", `payload_log: {sample: "0.1"}`, "payload_log.sample", "must be a number"},
		{"sample not a number", "payload_log: {sample: .nan}", "payload_log.sample", "must be in 0..1"},
		{"unknown mode", "payload_log: {mode: both}", "payload_log.mode", `got "both"`},
		{"redact not a list", "payload_log: {redact: SSN}", "payload_log.redact", "must be a list"},
		{"redact empty name", `payload_log: {redact: [""]}`, "payload_log.redact[0]", "must name an input"},
		{"redact twice", "payload_log: {redact: [a, a]}", "payload_log.redact[1]", "listed twice"},
		{"redact number", "payload_log: {redact: [1]}", "payload_log.redact[0]", "must be a string"},
		{"unknown key", "payload_log: {rate: 0.1}", "payload_log.rate", "unknown field"},
		{"not a mapping", "payload_log: 0.1", "payload_log", "must be a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("ParseConfig error %v, want ErrInvalidConfig", err)
			}
			for _, fe := range fieldErrorsOf(err) {
				if fe.Field == tt.field && strings.Contains(fe.Msg, tt.msg) {
					return
				}
			}
			t.Fatalf("error %q has no %s error containing %q", err, tt.field, tt.msg)
		})
	}
}

func TestPayloadLogRoundTripAndClone(t *testing.T) {
	want := DefaultConfig()
	want.PayloadLog = &PayloadLog{Sample: 0.25, Mode: PayloadLogResponse, Redact: []string{"ssn", "name"}}
	data, err := yaml.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseConfig(data)
	if err != nil {
		t.Fatalf("ParseConfig(%s): %v", data, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip = %+v, want %+v", got.PayloadLog, want.PayloadLog)
	}
	c := got.Clone()
	c.PayloadLog.Redact[0] = "changed"
	c.PayloadLog.Sample = 1
	if got.PayloadLog.Redact[0] != "ssn" || got.PayloadLog.Sample != 0.25 {
		t.Fatalf("Clone shares the payload_log block: %+v", got.PayloadLog)
	}
}
