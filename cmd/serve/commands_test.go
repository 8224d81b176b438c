package main

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	type call struct {
		name string
		args []string
	}
	var got []call
	tests := []struct {
		name     string
		args     []string
		want     *call // nil: no command runs
		status   int
		inStdout string
		inStderr string
	}{
		{"no arguments runs serve", nil, &call{"serve", nil}, 7, "", ""},
		{"flags first run serve", []string{"--http-port", "0"}, &call{"serve", []string{"--http-port", "0"}}, 7, "", ""},
		{"serve named", []string{"serve", "--http-port", "0"}, &call{"serve", []string{"--http-port", "0"}}, 7, "", ""},
		{"another command", []string{"check", "x"}, &call{"check", []string{"x"}}, 7, "", ""},
		{"help lists", []string{"help"}, nil, 0, "check summary", ""},
		{"help for a command", []string{"help", "serve"}, &call{"serve", []string{"-h"}}, 7, "", ""},
		{"unknown command", []string{"frobnicate"}, nil, 2, "", `unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = nil
			var stdout, stderr bytes.Buffer
			cmds := []command{}
			for _, n := range []string{"serve", "check"} {
				cmds = append(cmds, command{n, n + " summary", func(args []string, _, _ io.Writer) int {
					got = append(got, call{n, args})
					return 7
				}})
			}
			status := dispatch(cmds, tt.args, &stdout, &stderr)
			if status != tt.status {
				t.Errorf("status %d, want %d", status, tt.status)
			}
			switch {
			case tt.want == nil && len(got) != 0:
				t.Errorf("ran %v, want nothing run", got)
			case tt.want != nil && (len(got) != 1 || got[0].name != tt.want.name || !slices.Equal(got[0].args, tt.want.args)):
				t.Errorf("ran %v, want %v", got, *tt.want)
			}
			if !strings.Contains(stdout.String(), tt.inStdout) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tt.inStdout)
			}
			if !strings.Contains(stderr.String(), tt.inStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.inStderr)
			}
		})
	}
}

// TestCommandsListed checks the real table: help names every command.
func TestCommandsListed(t *testing.T) {
	var stdout bytes.Buffer
	if status := dispatch(commands, []string{"help"}, &stdout, &stdout); status != 0 {
		t.Fatalf("help: status %d", status)
	}
	for _, c := range append(slices.Clone(commands), command{name: "help"}) {
		if !strings.Contains(stdout.String(), "  "+c.name+" ") {
			t.Errorf("help does not list %s:\n%s", c.name, stdout.String())
		}
	}
	stdout.Reset()
	if status := dispatch(commands, []string{"version"}, &stdout, &stdout); status != 0 || stdout.String() != "onnxserve "+version+"\n" {
		t.Errorf("version: status %d, %q", status, stdout.String())
	}
}
