package serving

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// hookFunc adapts a function to VersionHook.
type hookFunc func(VersionInfo) (Validator, error)

func (f hookFunc) Prepare(v VersionInfo) (Validator, error) { return f(v) }

// rejectBase rejects requests whose first value is base.
type rejectBase struct{ base float32 }

func (r rejectBase) Validate(in []tensor.Tensor) error {
	if string(in[0].Data[:4]) == string(fp32(r.base)) {
		return tensor.Invalidf("input %q row 0 feature 0: rejected (validation.test)", in[0].Name)
	}
	return nil
}

func TestVersionHook(t *testing.T) {
	l := newFakeLoader()
	l.set("dir1/model.onnx", 1, nil)
	l.set("dir2/model.onnx", 2, nil)
	s := newTestServer(t, l, Config{})
	var got []VersionInfo
	s.SetVersionHook(hookFunc(func(v VersionInfo) (Validator, error) {
		got = append(got, v)
		if v.Version == "2" {
			return nil, errors.New("profile.json: inputs[0].features: mismatch")
		}
		return rejectBase{7}, nil
	}))
	ctx := context.Background()
	s.Apply(ctx, []Desired{desired("m", batchingConfig(), dv(1, "dir1/model.onnx", "a"), dv(2, "dir2/model.onnx", "b"))})
	if len(got) != 2 || got[0].Dir != "dir1" || got[0].Model != "m" || len(got[0].Inputs) != 1 || got[0].Config.MaxBatchSize != 8 {
		t.Fatalf("hook saw %+v", got)
	}
	idx := s.Index()
	if len(idx) != 2 || idx[0].State != StateReady || idx[1].State != StateUnavailable || !strings.Contains(idx[1].Reason, "profile.json: inputs[0].features: mismatch") {
		t.Fatalf("index %+v, want version 2 UNAVAILABLE with the hook's reason", idx)
	}
	if _, err := s.Infer(ctx, request("1", 1, 3)); err != nil {
		t.Fatalf("accepted request: %v", err)
	}
	_, err := s.Infer(ctx, request("1", 1, 7))
	if !errors.Is(err, ErrInvalidRequest) || err.Error() != `model "m" version 1: input "INPUT" row 0 feature 0: rejected (validation.test)` {
		t.Fatalf("rejected request: %v", err)
	}
	if m, v := Labels(err); m != "m" || v != "1" {
		t.Errorf("labels %q %q", m, v)
	}
}
