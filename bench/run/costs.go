package main

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/google/pprof/profile"
)

// costCategory is one kind of server work, recognised by the functions on
// a CPU sample's stack.
type costCategory struct {
	name string
	re   *regexp.Regexp
}

// costCategories attribute each CPU sample to one kind of work, so the
// shares add up. The first wholeStack categories claim a sample when any
// function of its stack matches (an allocation made while decoding
// protobuf counts as allocation, a read inside gRPC's transport as a
// syscall); the rest go by the frame nearest the leaf that one of them
// matches, so work in onnxserve's own front end counts as its own even
// though gRPC calls it.
var costCategories = []costCategory{
	{"ONNX Runtime (sampled)", regexp.MustCompile(`^runtime\.cgocall$|^runtime\._ExternalCode$`)},
	{"garbage collection", regexp.MustCompile(`^runtime\.(gcBgMarkWorker|gcAssistAlloc|bgsweep|bgscavenge|gcStart|markroot|gcMarkDone|gcMarkTermination)`)},
	{"memory allocation", regexp.MustCompile(`^runtime\.(mallocgc|newobject|makeslice|growslice|makemap|mapassign)`)},
	{"socket reads and writes", regexp.MustCompile(`^syscall\.|^internal/runtime/syscall|^internal/poll\.`)},
	{"protobuf", regexp.MustCompile(`^google\.golang\.org/protobuf/`)},
	{"JSON decoding", regexp.MustCompile(`^github\.com/onnxserve/onnxserve/internal/transport/httpapi\.(\(\*decoder\)|\(\*dataParser\)|\(\*scanner\)|\(\*numberToken\)|decodeInferRequest|scanNumber|digitRun|leadingDigits|eightDigits|skipWS|significant|parseMagnitude)`)},
	{"batching and serving core", regexp.MustCompile(`^github\.com/onnxserve/onnxserve/internal/(batcher|serving|router|tensor|runtime)\.`)},
	{"onnxserve front ends", regexp.MustCompile(`^github\.com/onnxserve/onnxserve/internal/transport`)},
	{"gRPC and HTTP/2", regexp.MustCompile(`^google\.golang\.org/grpc|^golang\.org/x/net/http2`)},
	{"HTTP/1.1 (fasthttp)", regexp.MustCompile(`^github\.com/valyala/fasthttp`)},
	{"Go scheduler, timers and metrics", regexp.MustCompile(`^runtime\.(schedule|findRunnable|park_m|mcall|gopark|goready|ready|netpoll|stealWork|runqgrab|notesleep|notewakeup|futex|checkTimers|nanotime|usleep|mPark|stopm|startm|handoffp|wakep|exitsyscall|entersyscall|reentersyscall|casgstatus|selectgo|chansend|chanrecv|lock2|unlock2|semacquire|semrelease|newproc|goexit0|gfget|gfput|runqput|resetspinning|sysmon)|^time\.|^github\.com/prometheus/`)},
}

// wholeStack is how many of costCategories match anywhere on the stack.
const wholeStack = 4

// otherCosts names samples no category matches.
const otherCosts = "other"

// costShare is one category's CPU time per inference.
type costShare struct {
	Category string  `json:"category"`
	Micros   float64 `json:"us_per_inference"`
}

// costProfile breaks one model's and protocol's server CPU per inference
// down by kind of work.
type costProfile struct {
	Model      string  `json:"model"`
	Protocol   string  `json:"protocol"`
	Throughput float64 `json:"throughput"`
	// ServerMicros is the server's CPU per inference over the profile's
	// window, from /proc: everything, the kernel's share included.
	ServerMicros float64 `json:"server_us_per_inference"`
	// RawMicros is ONNX Runtime's own CPU per row at the server's batch
	// size, from the raw baseline (0 when it was not measured).
	RawMicros float64 `json:"raw_us_per_item,omitempty"`
	// Shares are the sampled Go-side costs, ONNX Runtime's calls apart.
	Shares []costShare `json:"shares"`
	// SampledORT is the CPU profile's time inside ONNX Runtime per
	// inference; the profiler does not always see that thread.
	SampledORT float64 `json:"sampled_ort_us_per_inference"`
	// SampleMicros is what one profile sample (10 ms of CPU) comes to per
	// inference: the breakdown's resolution.
	SampleMicros float64 `json:"sample_us_per_inference"`
}

// attribute reads a CPU profile and returns its time per inference by
// category, largest first, ONNX Runtime's apart.
func attribute(path string, inferences float64) (shares []costShare, ort float64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			idx = i
		}
	}
	if idx < 0 || inferences <= 0 {
		return nil, 0, fmt.Errorf("%s: no cpu nanoseconds samples, or no inferences", path)
	}
	byName := map[string]float64{}
	for _, s := range p.Sample {
		byName[categorize(s)] += float64(s.Value[idx])
	}
	perInference := func(ns float64) float64 { return ns / 1e3 / inferences }
	for _, c := range append(costCategories[1:], costCategory{name: otherCosts}) {
		if ns := byName[c.name]; ns > 0 {
			shares = append(shares, costShare{c.name, perInference(ns)})
		}
	}
	sortShares(shares)
	return shares, perInference(byName[costCategories[0].name]), nil
}

// categorize names the category of one sample.
func categorize(s *profile.Sample) string {
	for _, c := range costCategories[:wholeStack] {
		for _, loc := range s.Location {
			for _, line := range loc.Line {
				if line.Function != nil && c.re.MatchString(line.Function.Name) {
					return c.name
				}
			}
		}
	}
	// Frames without symbols are C code: ONNX Runtime, or the C library
	// it calls.
	if len(s.Location) > 0 && len(s.Location[0].Line) == 0 {
		return costCategories[0].name
	}
	for _, loc := range s.Location { // the leaf first
		for _, line := range loc.Line {
			if line.Function == nil {
				continue
			}
			for _, c := range costCategories[wholeStack:] {
				if c.re.MatchString(line.Function.Name) {
					return c.name
				}
			}
		}
	}
	return otherCosts
}

func sortShares(s []costShare) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].Micros > s[j-1].Micros; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// costsMarkdown is the table of where the server's CPU goes per
// inference, one column per profiled model and protocol.
func costsMarkdown(cs []costProfile) string {
	if len(cs) == 0 {
		return ""
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("| µs per inference |")
	for _, c := range cs {
		w(" %s over %s |", c.Model, c.Protocol)
	}
	w("\n|---|")
	for range cs {
		w("---:|")
	}
	row := func(label string, v func(c costProfile) string) {
		w("\n| %s |", label)
		for _, c := range cs {
			w(" %s |", v(c))
		}
	}
	row("**server CPU, all of it** (`/proc`)", func(c costProfile) string { return fmt.Sprintf("**%.1f**", c.ServerMicros) })
	haveRaw := slices.ContainsFunc(cs, func(c costProfile) bool { return c.RawMicros > 0 })
	if haveRaw {
		row("ONNX Runtime's own run, raw baseline at the same batch size", func(c costProfile) string {
			if c.RawMicros == 0 {
				return "–"
			}
			return fmt.Sprintf("%.1f", c.RawMicros)
		})
		row("**beyond ONNX Runtime**", func(c costProfile) string {
			if c.RawMicros == 0 {
				return "–"
			}
			return fmt.Sprintf("**%.1f**", c.ServerMicros-c.RawMicros)
		})
	}
	// Rows by their total over the columns, largest first.
	totals := map[string]float64{}
	for _, c := range cs {
		for _, s := range c.Shares {
			totals[s.Category] += s.Micros
		}
	}
	var rows []costShare
	for n, t := range totals {
		rows = append(rows, costShare{n, t})
	}
	sortShares(rows)
	var names []string
	for _, r := range rows {
		names = append(names, r.Category)
	}
	for _, n := range names {
		row("&nbsp;&nbsp;"+n, func(c costProfile) string {
			for _, s := range c.Shares {
				if s.Category == n {
					return fmt.Sprintf("%.1f", s.Micros)
				}
			}
			return "–"
		})
	}
	row("*resolution: one 10 ms profile sample*", func(c costProfile) string { return fmt.Sprintf("*%.2f*", c.SampleMicros) })
	if haveRaw {
		row("&nbsp;&nbsp;not in the Go profile (kernel, ONNX Runtime slowed by sharing its core)", func(c costProfile) string {
			if c.RawMicros == 0 {
				return "–"
			}
			rest := c.ServerMicros - c.RawMicros
			for _, s := range c.Shares {
				rest -= s.Micros
			}
			return fmt.Sprintf("%.1f", rest)
		})
	}
	w("\n")
	return b.String()
}
