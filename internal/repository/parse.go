package repository

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// MaxConfigBytes bounds the size of a config.yaml; a larger file is
// rejected before it is parsed.
const MaxConfigBytes = 1 << 20

// ParseConfig parses the text of a config.yaml, applies the defaults and
// validates the result. It is strict: an unknown key, a duplicate key, a
// value of the wrong type (8.5 where an integer belongs, 500 where a
// duration with a unit belongs), more than one YAML document and every
// impossible value are errors, each a FieldError naming the field and its
// line, all wrapping ErrInvalidConfig. Every problem is reported at once.
//
// Empty text is the all-defaults config. A key with no value counts as
// absent, so "dynamic_batching:" alone leaves batching off; write
// "dynamic_batching: {}" for batching with every default. After a
// successful parse, preferred_batch_sizes and specific are ascending.
func ParseConfig(data []byte) (Config, error) {
	doc, err := decodeDocument(data)
	if err != nil {
		return Config{}, err
	}
	cfg := DefaultConfig()
	p := parser{ch: checker{lines: map[string]int{}}}
	if doc != nil {
		p.config(doc, &cfg)
	}
	if err := p.ch.err(); err != nil {
		return Config{}, err
	}
	ch := checker{lines: p.ch.lines}
	cfg.validate(&ch)
	if err := ch.err(); err != nil {
		return Config{}, err
	}
	if cfg.DynamicBatching != nil {
		slices.Sort(cfg.DynamicBatching.PreferredBatchSizes)
	}
	slices.Sort(cfg.VersionPolicy.Specific)
	return cfg, nil
}

// ParseTraffic parses a traffic block on its own (YAML, or JSON, which the
// YAML parser reads too) as the traffic API receives it, with the same
// strictness, defaults and validation as the traffic block of ParseConfig.
// Field paths in its errors are relative to the block ("split",
// "shadow.percent"). Empty text is the default block.
func ParseTraffic(data []byte) (Traffic, error) {
	doc, err := decodeDocument(data)
	if err != nil {
		return Traffic{}, err
	}
	t := Traffic{StickyKey: DefaultStickyKey}
	p := parser{ch: checker{lines: map[string]int{}}}
	if doc != nil {
		p.traffic(doc, "", &t)
	}
	if err := p.ch.err(); err != nil {
		return Traffic{}, err
	}
	ch := checker{lines: p.ch.lines}
	t.validate(&ch, "")
	if err := ch.err(); err != nil {
		return Traffic{}, err
	}
	return t, nil
}

// ParseTrafficUpdate parses the body of a traffic API PUT, which replaces a
// model's whole traffic block. Stricter than ParseTraffic: the body must be
// UTF-8 text holding a mapping with a "split" key, so an empty, null or
// garbled body is an error instead of a silent reset to the defaults. A
// null split ({"split": null}) clears the split: all traffic then goes to
// the newest ready version.
func ParseTrafficUpdate(data []byte) (Traffic, error) {
	if !utf8.Valid(data) {
		return Traffic{}, &FieldError{Msg: "the body is not UTF-8 text"}
	}
	doc, err := decodeDocument(data)
	if err != nil {
		return Traffic{}, err
	}
	if doc == nil || doc.Kind != yaml.MappingNode {
		return Traffic{}, &FieldError{Msg: `the body must be a JSON object with a "split" key (send {"split": null} to clear the split)`}
	}
	hasSplit := false
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if k := resolveAlias(doc.Content[i]); k.Kind == yaml.ScalarNode && k.Value == "split" {
			hasSplit = true
		}
	}
	if !hasSplit {
		return Traffic{}, &FieldError{Field: "split", Msg: `is required (send {"split": null} to clear the split)`}
	}
	return ParseTraffic(data)
}

// LoadConfig reads and parses the config.yaml at path. A missing file is
// NoFileConfig: batching chosen by the model's shapes and a measurement.
// Errors start with path.
func LoadConfig(path string) (Config, error) {
	data, err := readConfigFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return NoFileConfig(), nil
	}
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// readConfigFile reads at most MaxConfigBytes, so a huge file placed by
// mistake cannot exhaust memory.
func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxConfigBytes {
		return nil, &FieldError{Msg: fmt.Sprintf("file is larger than %d bytes", MaxConfigBytes)}
	}
	return data, nil
}

// decodeDocument returns the root node of the only YAML document in data,
// or nil when data holds no document or an empty one.
func decodeDocument(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, &FieldError{Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, &FieldError{Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	default:
		return nil, &FieldError{Line: extra.Line, Msg: "more than one YAML document"}
	}
	root := &doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		root = doc.Content[0]
	}
	if isNull(resolveAlias(root)) {
		return nil, nil
	}
	return root, nil
}

// parser walks a YAML node tree field by field, rather than decoding into
// structs, so that every error names its field path and line, integers are
// never truncated from floats, and an absent key is told apart from a zero.
type parser struct {
	ch checker
}

// fields maps each key a mapping may hold to its decoder, which receives
// the (non-null) value node and the field path.
type fields map[string]func(v *yaml.Node, path string)

func joinPath(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// resolveAlias follows aliases to the anchored node. The bound stops a
// malicious chain; anchors cannot normally point at other aliases.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names a node's type and value for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		kind := map[string]string{
			"!!str": "string", "!!int": "integer", "!!float": "number",
			"!!bool": "boolean", "!!null": "null", "!!timestamp": "timestamp",
		}[n.ShortTag()]
		if kind == "" {
			kind = n.ShortTag()
		}
		return fmt.Sprintf("%s %q", kind, n.Value)
	default:
		return "an unsupported YAML node"
	}
}

func (p *parser) typeErr(n *yaml.Node, path, want string) {
	subject := "must"
	if path == "" {
		subject = "the document must"
	}
	p.ch.errs = append(p.ch.errs, &FieldError{Field: path, Line: n.Line, Msg: fmt.Sprintf("%s be %s, got %s", subject, want, describe(n))})
}

// mapping decodes a mapping node, calling the decoder of each key present
// with a non-null value. It returns the keys seen, null ones included.
func (p *parser) mapping(n *yaml.Node, path string, known fields) map[string]bool {
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode {
		p.typeErr(n, path, "a mapping")
		return nil
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolveAlias(n.Content[i]), resolveAlias(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.typeErr(k, path, "a mapping with plain keys")
			continue
		}
		field := joinPath(path, k.Value)
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			p.ch.errs = append(p.ch.errs, &FieldError{Field: path, Line: k.Line, Msg: "merge keys (<<) are not supported"})
			continue
		}
		if seen[k.Value] {
			p.ch.errs = append(p.ch.errs, &FieldError{Field: field, Line: k.Line, Msg: "duplicate key"})
			continue
		}
		seen[k.Value] = true
		decode, ok := known[k.Value]
		if !ok {
			p.ch.errs = append(p.ch.errs, &FieldError{Field: field, Line: k.Line, Msg: "unknown field"})
			continue
		}
		p.ch.lines[field] = k.Line
		if isNull(v) {
			continue
		}
		decode(v, field)
	}
	return seen
}

func (p *parser) int64Field(n *yaml.Node, path string) (int64, bool) {
	n = resolveAlias(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		p.typeErr(n, path, "an integer")
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		p.ch.errs = append(p.ch.errs, &FieldError{Field: path, Line: n.Line, Msg: fmt.Sprintf("integer %s is out of range", n.Value)})
		return 0, false
	}
	return v, true
}

func (p *parser) intField(n *yaml.Node, path string, dst *int) {
	v, ok := p.int64Field(n, path)
	if !ok {
		return
	}
	if v != int64(int(v)) {
		p.ch.errs = append(p.ch.errs, &FieldError{Field: path, Line: n.Line, Msg: fmt.Sprintf("integer %d is out of range", v)})
		return
	}
	*dst = int(v)
}

func (p *parser) durationField(n *yaml.Node, path string, dst *time.Duration) {
	n = resolveAlias(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.typeErr(n, path, "a duration with a unit, such as 500us or 5s")
		return
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		p.typeErr(n, path, "a duration with a unit, such as 500us or 5s")
		return
	}
	*dst = d
}

func (p *parser) boolField(n *yaml.Node, path string, dst *bool) {
	n = resolveAlias(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		p.typeErr(n, path, "true or false")
		return
	}
	if err := n.Decode(dst); err != nil {
		p.typeErr(n, path, "true or false")
	}
}

func (p *parser) stringField(n *yaml.Node, path string, dst *string) {
	n = resolveAlias(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.typeErr(n, path, "a string")
		return
	}
	*dst = n.Value
}

// sequence calls item for each element of a list node; an empty list gives
// a non-nil empty result so "specific: []" is told apart from absence.
func (p *parser) sequence(n *yaml.Node, path string, item func(v *yaml.Node, path string)) bool {
	n = resolveAlias(n)
	if n.Kind != yaml.SequenceNode {
		p.typeErr(n, path, "a list")
		return false
	}
	for i, v := range n.Content {
		field := fmt.Sprintf("%s[%d]", path, i)
		p.ch.lines[field] = resolveAlias(v).Line
		item(v, field)
	}
	return true
}

func (p *parser) intList(n *yaml.Node, path string, dst *[]int) {
	out := []int{}
	ok := p.sequence(n, path, func(v *yaml.Node, field string) {
		var x int
		p.intField(v, field, &x)
		out = append(out, x)
	})
	if ok {
		*dst = out
	}
}

func (p *parser) int64List(n *yaml.Node, path string, dst *[]int64) {
	out := []int64{}
	ok := p.sequence(n, path, func(v *yaml.Node, field string) {
		x, _ := p.int64Field(v, field)
		out = append(out, x)
	})
	if ok {
		*dst = out
	}
}

func (p *parser) config(n *yaml.Node, c *Config) {
	p.mapping(n, "", fields{
		"max_batch_size": func(v *yaml.Node, path string) {
			if isAuto(v) {
				c.MaxBatchSize, c.MaxBatchSizeAuto = AutoMaxBatchSize, true
				return
			}
			p.intField(v, path, &c.MaxBatchSize)
		},
		"dynamic_batching": func(v *yaml.Node, path string) {
			db := defaultDynamicBatching()
			c.DynamicBatching = &db
			p.mapping(v, path, fields{
				"max_queue_delay": func(v *yaml.Node, path string) { p.durationField(v, path, &db.MaxQueueDelay) },
				"preferred_batch_sizes": func(v *yaml.Node, path string) {
					if isAuto(v) {
						db.PreferredBatchSizesAuto = true
						return
					}
					p.intList(v, path, &db.PreferredBatchSizes)
				},
				"dispatch":        func(v *yaml.Node, path string) { p.stringField(v, path, &db.Dispatch) },
				"tuning_time":     func(v *yaml.Node, path string) { p.durationField(v, path, &db.TuningTime) },
				"max_queue_size":  func(v *yaml.Node, path string) { p.intField(v, path, &db.MaxQueueSize) },
				"default_timeout": func(v *yaml.Node, path string) { p.durationField(v, path, &db.DefaultTimeout) },
			})
		},
		"instances": func(v *yaml.Node, path string) {
			in := &c.Instances
			p.mapping(v, path, fields{
				"count":              func(v *yaml.Node, path string) { p.intField(v, path, &in.Count) },
				"provider":           func(v *yaml.Node, path string) { p.stringField(v, path, &in.Provider) },
				"device_id":          func(v *yaml.Node, path string) { p.intField(v, path, &in.DeviceID) },
				"intra_op_threads":   func(v *yaml.Node, path string) { p.intField(v, path, &in.IntraOpThreads) },
				"inter_op_threads":   func(v *yaml.Node, path string) { p.intField(v, path, &in.InterOpThreads) },
				"graph_optimization": func(v *yaml.Node, path string) { p.stringField(v, path, &in.GraphOptimization) },
				"allow_spinning": func(v *yaml.Node, path string) {
					var b bool
					p.boolField(v, path, &b)
					in.AllowSpinning = &b
				},
			})
		},
		"payload_log": func(v *yaml.Node, path string) {
			pl := PayloadLog{Mode: PayloadLogAll}
			c.PayloadLog = &pl
			p.payloadLog(v, path, &pl)
		},
		"version_policy": func(v *yaml.Node, path string) {
			var vp VersionPolicy
			p.mapping(v, path, fields{
				"latest": func(v *yaml.Node, path string) {
					p.intField(v, path, &vp.Latest)
					if vp.Latest < 1 {
						// Zero would read as "latest not set" below.
						p.ch.errs = append(p.ch.errs, &FieldError{Field: path, Line: resolveAlias(v).Line, Msg: fmt.Sprintf("must be >= 1, got %d", vp.Latest)})
						vp.Latest = 0
					}
				},
				"all":      func(v *yaml.Node, path string) { p.boolField(v, path, &vp.All) },
				"specific": func(v *yaml.Node, path string) { p.int64List(v, path, &vp.Specific) },
			})
			// "all: false" alone, like an empty block, is no choice at all.
			if vp.Latest != 0 || vp.All || vp.Specific != nil {
				c.VersionPolicy = vp
			}
		},
		"traffic": func(v *yaml.Node, path string) {
			t := Traffic{StickyKey: DefaultStickyKey}
			c.Traffic = &t
			p.traffic(v, path, &t)
		},
		"rollout": func(v *yaml.Node, path string) {
			r := DefaultRollout()
			c.Rollout = &r
			p.rollout(v, path, &r)
		},
		"warmup": func(v *yaml.Node, path string) {
			p.mapping(v, path, fields{
				"batch_sizes": func(v *yaml.Node, path string) { p.intList(v, path, &c.Warmup.BatchSizes) },
				"dims": func(v *yaml.Node, path string) {
					v = resolveAlias(v)
					if v.Kind != yaml.MappingNode {
						p.typeErr(v, path, "a mapping of input name to dimensions")
						return
					}
					dims := make(map[string][]int64, len(v.Content)/2)
					for i := 0; i+1 < len(v.Content); i += 2 {
						k := resolveAlias(v.Content[i])
						if k.Kind != yaml.ScalarNode {
							p.typeErr(k, path, "a mapping with input names as keys")
							continue
						}
						field := fmt.Sprintf("%s[%q]", path, k.Value)
						if _, dup := dims[k.Value]; dup {
							p.ch.errs = append(p.ch.errs, &FieldError{Field: field, Line: k.Line, Msg: "duplicate key"})
							continue
						}
						p.ch.lines[field] = k.Line
						var d []int64
						p.int64List(v.Content[i+1], field, &d)
						dims[k.Value] = d
					}
					c.Warmup.Dims = dims
				},
			})
		},
		"sequence_batching": func(v *yaml.Node, path string) {
			sb := &SequenceBatching{MaxSequenceIdle: DefaultMaxSequenceIdle, MaxSequences: DefaultMaxSequences}
			c.SequenceBatching = sb
			p.mapping(v, path, fields{
				"max_sequence_idle": func(v *yaml.Node, path string) { p.durationField(v, path, &sb.MaxSequenceIdle) },
				"max_sequences":     func(v *yaml.Node, path string) { p.intField(v, path, &sb.MaxSequences) },
				"state": func(v *yaml.Node, path string) {
					p.sequence(v, path, func(v *yaml.Node, field string) {
						st := SequenceState{Initial: StateInitialZeros}
						p.mapping(v, field, fields{
							"input":      func(v *yaml.Node, path string) { p.stringField(v, path, &st.Input) },
							"output":     func(v *yaml.Node, path string) { p.stringField(v, path, &st.Output) },
							"batch_axis": func(v *yaml.Node, path string) { p.intField(v, path, &st.BatchAxis) },
							"initial":    func(v *yaml.Node, path string) { p.stringField(v, path, &st.Initial) },
						})
						sb.State = append(sb.State, st)
					})
				},
			})
		},
		"drift":      func(v *yaml.Node, path string) { p.drift(v, path, c) },
		"validation": func(v *yaml.Node, path string) { p.validation(v, path, c) },
		"check": func(v *yaml.Node, path string) {
			b := &CheckBudget{Batch: 1}
			c.Check = b
			seen := p.mapping(v, path, fields{
				"batch": func(v *yaml.Node, path string) { p.intField(v, path, &b.Batch) },
				"p99":   func(v *yaml.Node, path string) { p.durationField(v, path, &b.P99) },
			})
			if seen != nil && !seen["p99"] {
				// A budget without its bound would pass everything.
				p.ch.errs = append(p.ch.errs, &FieldError{Field: joinPath(path, "p99"), Line: resolveAlias(v).Line, Msg: "required"})
			}
		},
		"monitoring": func(v *yaml.Node, path string) {
			mon := defaultMonitoring()
			c.Monitoring = &mon
			p.monitoring(v, path, &mon)
		},
	})
}

// isAuto reports whether a node is the plain string "auto", the value that
// lets the server choose a batch size by measurement.
func isAuto(n *yaml.Node) bool {
	n = resolveAlias(n)
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && n.Value == "auto"
}

// traffic decodes a traffic block; prefix is "traffic" inside config.yaml
// and empty for the traffic API.
func (p *parser) traffic(n *yaml.Node, prefix string, t *Traffic) {
	p.mapping(n, prefix, fields{
		"split": func(v *yaml.Node, path string) {
			v = resolveAlias(v)
			if v.Kind != yaml.MappingNode {
				p.typeErr(v, path, "a mapping of version to weight")
				return
			}
			split := make(map[string]int, len(v.Content)/2)
			for i := 0; i+1 < len(v.Content); i += 2 {
				k, w := resolveAlias(v.Content[i]), v.Content[i+1]
				if k.Kind != yaml.ScalarNode {
					p.typeErr(k, path, "a mapping with version numbers as keys")
					continue
				}
				field := fmt.Sprintf("%s[%q]", path, k.Value)
				if _, dup := split[k.Value]; dup {
					p.ch.errs = append(p.ch.errs, &FieldError{Field: field, Line: k.Line, Msg: "duplicate key"})
					continue
				}
				p.ch.lines[field] = k.Line
				var weight int
				p.intField(w, field, &weight)
				split[k.Value] = weight
			}
			t.Split = split
		},
		"sticky_key": func(v *yaml.Node, path string) {
			p.stringField(v, path, &t.StickyKey)
			// Header names match case-insensitively; gRPC metadata keys are lowercase.
			t.StickyKey = strings.ToLower(t.StickyKey)
		},
		"shadow": func(v *yaml.Node, path string) {
			s := &Shadow{}
			t.Shadow = s
			seen := p.mapping(v, path, fields{
				"version": func(v *yaml.Node, path string) {
					if x, ok := p.int64Field(v, path); ok {
						s.Version = x
					}
				},
				"percent": func(v *yaml.Node, path string) { p.intField(v, path, &s.Percent) },
			})
			if seen == nil {
				return
			}
			// Mirroring doubles load on the shadow version, so neither
			// field has a default.
			for _, k := range []string{"version", "percent"} {
				if !seen[k] {
					p.ch.errs = append(p.ch.errs, &FieldError{Field: joinPath(path, k), Line: resolveAlias(v).Line, Msg: "required"})
				}
			}
		},
	})
}
