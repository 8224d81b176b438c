package main

import (
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/onnxserve/onnxserve/internal/transport/grpcapi"
)

func TestGCPercent(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	noEnv := func(string) string { return "" }
	cases := []struct {
		name       string
		args       []string
		getenv     func(string) string
		runtime    int // the runtime's target before applyGC, as GOGC would set it
		want       int
		wantSource string
	}{
		{"default", nil, noEnv, 100, defaultGCPercent, "default"},
		{"flag", []string{"--gc-percent", "250"}, noEnv, 100, 250, "--gc-percent"},
		{"flag beats GOGC", []string{"--gc-percent", "-1"}, func(string) string { return "150" }, 150, -1, "--gc-percent"},
		{"GOGC kept", nil, func(k string) string {
			if k == "GOGC" {
				return "150"
			}
			return ""
		}, 150, 150, "GOGC"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			debug.SetGCPercent(c.runtime)
			o, err := parseOptions(c.args)
			if err != nil {
				t.Fatal(err)
			}
			got, source := o.applyGC(c.getenv)
			if got != c.want || source != c.wantSource {
				t.Fatalf("applyGC = %d from %s, want %d from %s", got, source, c.want, c.wantSource)
			}
			if inForce := debug.SetGCPercent(100); inForce != c.want {
				t.Fatalf("collector target in force %d, want %d", inForce, c.want)
			}
		})
	}
	if _, err := parseOptions([]string{"--gc-percent", "-2"}); err == nil {
		t.Fatal("--gc-percent -2 accepted")
	}
}

func TestGRPCKeepaliveFlags(t *testing.T) {
	cases := []struct {
		name           string
		args           []string
		age, grace     time.Duration
		minTime, aTime time.Duration
	}{
		{"defaults", nil, grpcapi.DefaultMaxConnectionAge, grpcapi.Forever, grpcapi.DefaultKeepaliveMinTime, grpcapi.DefaultKeepaliveTime},
		{"never age", []string{"--grpc-max-connection-age", "0"}, grpcapi.Forever, grpcapi.Forever, grpcapi.DefaultKeepaliveMinTime, grpcapi.DefaultKeepaliveTime},
		{"bounded grace", []string{"--grpc-max-connection-age", "90s", "--grpc-max-connection-age-grace", "30s"}, 90 * time.Second, 30 * time.Second, grpcapi.DefaultKeepaliveMinTime, grpcapi.DefaultKeepaliveTime},
		{"keepalive", []string{"--grpc-keepalive-min-time", "30s", "--grpc-keepalive-time", "2m"}, grpcapi.DefaultMaxConnectionAge, grpcapi.Forever, 30 * time.Second, 2 * time.Minute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := parseOptions(c.args)
			if err != nil {
				t.Fatal(err)
			}
			var cfg grpcapi.Config
			o.grpcAlive.apply(&cfg)
			if cfg.Keepalive.MaxConnectionAge != c.age || cfg.Keepalive.MaxConnectionAgeGrace != c.grace {
				t.Errorf("age %v grace %v, want %v and %v", cfg.Keepalive.MaxConnectionAge, cfg.Keepalive.MaxConnectionAgeGrace, c.age, c.grace)
			}
			if cfg.KeepalivePolicy.MinTime != c.minTime || cfg.Keepalive.Time != c.aTime || !cfg.KeepalivePolicy.PermitWithoutStream {
				t.Errorf("keepalive %+v policy %+v, want time %v min time %v", cfg.Keepalive, cfg.KeepalivePolicy, c.aTime, c.minTime)
			}
		})
	}
	for _, bad := range [][]string{
		{"--grpc-max-connection-age", "100ms"},
		{"--grpc-max-connection-age-grace", "-1s"},
		{"--grpc-keepalive-min-time", "0"},
	} {
		if _, err := parseOptions(bad); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("parseOptions(%q) = %v, want an error naming %s", bad, err, bad[0])
		}
	}
}
