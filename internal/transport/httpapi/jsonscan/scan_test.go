package jsonscan

import (
	"encoding/json"
	"testing"
)

// TestStrings checks string reading, escapes and surrogates against
// encoding/json.
func TestStrings(t *testing.T) {
	tests := []struct {
		json string
		want string
	}{
		{`"plain"`, "plain"},
		{`"tab\there\nnl"`, "tab\there\nnl"},
		{`"\u0041\u00e9\u4e2d"`, "Aé中"},
		{`"\ud83d\ude00"`, "😀"},
		{`"\ud83d"`, "\ufffd"},
		{`"\ude00\ud83d\ude00"`, "\ufffd😀"},
		{`"\ud83dx"`, "\ufffdx"},
		{`"raw é 中"`, "raw é 中"},
		{`"\b\f\r\/"`, "\b\f\r/"},
	}
	for _, tt := range tests {
		t.Run(tt.json, func(t *testing.T) {
			s := New([]byte(tt.json))
			got, err := s.Str()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			var ref string
			if err := json.Unmarshal([]byte(tt.json), &ref); err != nil {
				t.Fatal(err)
			}
			if ref != tt.want {
				t.Fatalf("encoding/json reads %q, test expects %q", ref, tt.want)
			}
		})
	}
}
