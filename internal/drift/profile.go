package drift

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"

	"github.com/onnxserve/onnxserve/internal/tensor"
)

// ProfileFile is the reference profile's file name in a version folder.
const ProfileFile = "profile.json"

// ProfileFormat is the format number written to and required of
// profile.json.
const ProfileFormat = 1

// DefaultBins is the number of quantile bins of a numeric feature.
const DefaultBins = 10

// TopValues is how many of the most frequent values a BYTES feature keeps;
// the others share one "rest" bin.
const TopValues = 50

// ErrProfile marks a profile.json that is malformed or does not match the
// model.
var ErrProfile = errors.New("invalid drift profile")

// Profile is the reference a version's live data is compared with: one
// entry per monitored input and output. A Profile is immutable once built
// or read, and safe for concurrent reads.
type Profile struct {
	// Format is ProfileFormat.
	Format int `json:"format"`
	// Rows is the number of reference rows it was made from.
	Rows int64 `json:"rows"`
	// Bins is the number of quantile bins asked for per numeric feature
	// (equal edges are merged, so a feature may have fewer).
	Bins    int             `json:"bins"`
	Inputs  []TensorProfile `json:"inputs"`
	Outputs []TensorProfile `json:"outputs"`
}

// TensorProfile is the reference of one input or output.
type TensorProfile struct {
	Name     string `json:"name"`
	DataType string `json:"datatype"`
	// Mode is how its elements map to features (flat, channel).
	Mode     Mode      `json:"mode"`
	Features []Feature `json:"features"`
	// Class is the predicted-class distribution (argmax of each row) of a
	// classifier's output: a numeric [batch, C] output with C ≥ 2.
	Class *Feature `json:"class,omitempty"`
}

// Feature is the reference distribution of one feature. A numeric feature
// has Edges: bin i holds x ≤ Edges[i] (and > Edges[i-1]), the last bin
// everything above the last edge; NaN and infinities are in no bin. A
// categorical feature (BYTES, or a predicted class) has Values: bin i holds
// Values[i], the last bin every other value. Ref is each bin's share of the
// reference values that fall in a bin.
type Feature struct {
	Edges  []float64 `json:"edges,omitempty"`
	Values []string  `json:"values,omitempty"`
	Ref    []float64 `json:"ref"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Mean   float64   `json:"mean"`
	Std    float64   `json:"std"`
	// NaN and Inf are the shares of NaN and infinite values among all of
	// the feature's values.
	NaN float64 `json:"nan"`
	Inf float64 `json:"inf"`
}

// categorical reports whether f bins by value.
func (f *Feature) categorical() bool { return f.Values != nil }

// bin returns the bin of numeric value x (finite).
func (f *Feature) bin(x float64) int { return sort.SearchFloat64s(f.Edges, x) }

// ReadProfile reads and checks a profile.json; a malformed file is an error
// naming the field, wrapping ErrProfile.
func ReadProfile(path string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseProfile(data)
}

// ParseProfile decodes and checks the text of a profile.json strictly:
// unknown fields, trailing data and impossible values are errors.
func ParseProfile(data []byte) (*Profile, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProfile, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the profile", ErrProfile)
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return &p, nil
}

// WriteTo writes p as indented JSON.
func (p *Profile) WriteTo(w io.Writer) (int64, error) {
	data, err := json.MarshalIndent(p, "", " ")
	if err != nil {
		return 0, err
	}
	n, err := w.Write(append(data, '\n'))
	return int64(n), err
}

func fieldErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrProfile, field, fmt.Sprintf(format, args...))
}

// check validates what the profile alone can tell.
func (p *Profile) check() error {
	if p.Format != ProfileFormat {
		return fieldErr("format", "must be %d, got %d", ProfileFormat, p.Format)
	}
	if p.Rows < 0 {
		return fieldErr("rows", "must be >= 0, got %d", p.Rows)
	}
	if p.Bins < 1 {
		return fieldErr("bins", "must be >= 1, got %d", p.Bins)
	}
	for kind, list := range map[string][]TensorProfile{"inputs": p.Inputs, "outputs": p.Outputs} {
		for i, tp := range list {
			path := fmt.Sprintf("%s[%d]", kind, i)
			if tp.Name == "" {
				return fieldErr(path+".name", "required")
			}
			if _, ok := tensor.ParseDataType(tp.DataType); !ok {
				return fieldErr(path+".datatype", "unknown datatype %q", tp.DataType)
			}
			if tp.Mode != ModeFlat && tp.Mode != ModeChannel {
				return fieldErr(path+".mode", "must be %q or %q, got %q", ModeFlat, ModeChannel, tp.Mode)
			}
			for j := range tp.Features {
				if err := tp.Features[j].check(fmt.Sprintf("%s.features[%d]", path, j)); err != nil {
					return err
				}
			}
			if tp.Class != nil {
				if err := tp.Class.check(path + ".class"); err != nil {
					return err
				}
				if !tp.Class.categorical() {
					return fieldErr(path+".class.values", "required")
				}
			}
		}
	}
	return nil
}

func (f *Feature) check(path string) error {
	if f.Edges != nil && f.Values != nil {
		return fieldErr(path, "has both edges and values")
	}
	bins := len(f.Edges) + 1
	if f.categorical() {
		bins = len(f.Values) + 1
	}
	for i, e := range f.Edges {
		if math.IsNaN(e) || math.IsInf(e, 0) || (i > 0 && e <= f.Edges[i-1]) {
			return fieldErr(fmt.Sprintf("%s.edges[%d]", path, i), "must be finite and increasing, got %g", e)
		}
	}
	if len(f.Ref) != bins {
		return fieldErr(path+".ref", "must have %d shares (one per bin), got %d", bins, len(f.Ref))
	}
	sum := 0.0
	for i, r := range f.Ref {
		if !(r >= 0 && r <= 1) {
			return fieldErr(fmt.Sprintf("%s.ref[%d]", path, i), "must be in [0, 1], got %g", r)
		}
		sum += r
	}
	if math.Abs(sum-1) > 1e-6 && sum != 0 {
		return fieldErr(path+".ref", "shares must sum to 1, got %g", sum)
	}
	for name, v := range map[string]float64{"nan": f.NaN, "inf": f.Inf} {
		if !(v >= 0 && v <= 1) {
			return fieldErr(path+"."+name, "must be in [0, 1], got %g", v)
		}
	}
	if f.Min > f.Max {
		return fieldErr(path+".min", "%g is above max %g", f.Min, f.Max)
	}
	if f.Std < 0 {
		return fieldErr(path+".std", "must be >= 0, got %g", f.Std)
	}
	return nil
}

// Modes gives the configured feature mode of a tensor by name; a tensor it
// does not name has its DefaultMode.
type Modes map[string]Mode

// Match checks p against a model's inputs and outputs with the configured
// modes: every monitored tensor has an entry of the same datatype, mode and
// feature count, and no entry names a tensor the model lacks. The error
// names the field, wrapping ErrProfile.
func (p *Profile) Match(inputs, outputs []tensor.Spec, modes Modes) error {
	if err := matchList("inputs", p.Inputs, inputs, modes); err != nil {
		return err
	}
	return matchList("outputs", p.Outputs, outputs, modes)
}

func matchList(kind string, got []TensorProfile, specs []tensor.Spec, modes Modes) error {
	byName := make(map[string]int, len(got))
	for i, tp := range got {
		if _, dup := byName[tp.Name]; dup {
			return fieldErr(fmt.Sprintf("%s[%d].name", kind, i), "%q listed twice", tp.Name)
		}
		byName[tp.Name] = i
	}
	for _, sp := range specs {
		l, err := newLayout(sp.Name, sp.Shape, modes[sp.Name])
		if err != nil {
			return fmt.Errorf("%w: %v", ErrProfile, err)
		}
		i, ok := byName[sp.Name]
		if l.mode == ModeNone {
			delete(byName, sp.Name)
			continue
		}
		if !ok {
			return fieldErr(kind, "no entry for %q", sp.Name)
		}
		delete(byName, sp.Name)
		tp := got[i]
		path := fmt.Sprintf("%s[%d]", kind, i)
		if tp.DataType != sp.DataType.String() {
			return fieldErr(path+".datatype", "%q is %s in the model, %s in the profile", sp.Name, sp.DataType, tp.DataType)
		}
		if tp.Mode != l.mode {
			return fieldErr(path+".mode", "%q is monitored in mode %s, the profile has %s", sp.Name, l.mode, tp.Mode)
		}
		if len(tp.Features) != l.features {
			return fieldErr(path+".features", "%q has %d features in the model, %d in the profile", sp.Name, l.features, len(tp.Features))
		}
		for j := range tp.Features {
			if tp.Features[j].categorical() != (sp.DataType == tensor.Bytes) {
				return fieldErr(fmt.Sprintf("%s.features[%d]", path, j), "must have %s for a %s tensor", map[bool]string{true: "values", false: "edges"}[sp.DataType == tensor.Bytes], sp.DataType)
			}
		}
	}
	for name, i := range byName {
		return fieldErr(fmt.Sprintf("%s[%d].name", kind, i), "the model has no %s %q", kind[:len(kind)-1], name)
	}
	return nil
}

// Builder collects reference values and makes a Profile. Not safe for
// concurrent use.
type Builder struct {
	bins    int
	rows    int64
	inputs  []*tensorAcc
	outputs []*tensorAcc
}

// tensorAcc accumulates one tensor's reference values.
type tensorAcc struct {
	spec  tensor.Spec
	l     layout
	feats []featureAcc
	class *featureAcc // predicted class, for a classifier output
}

type featureAcc struct {
	values  []float64
	counts  map[string]int64
	nan     int64
	inf     int64
	total   int64
	classes int
}

// NewBuilder returns a Builder for a model with these inputs and outputs;
// bins ≤ 0 means DefaultBins.
func NewBuilder(inputs, outputs []tensor.Spec, modes Modes, bins int) (*Builder, error) {
	if bins <= 0 {
		bins = DefaultBins
	}
	b := &Builder{bins: bins}
	var err error
	if b.inputs, err = newAccs(inputs, modes, false); err != nil {
		return nil, err
	}
	if b.outputs, err = newAccs(outputs, modes, true); err != nil {
		return nil, err
	}
	return b, nil
}

func newAccs(specs []tensor.Spec, modes Modes, output bool) ([]*tensorAcc, error) {
	var out []*tensorAcc
	for _, sp := range specs {
		l, err := newLayout(sp.Name, sp.Shape, modes[sp.Name])
		if err != nil {
			return nil, err
		}
		if l.mode == ModeNone {
			continue
		}
		a := &tensorAcc{spec: sp, l: l, feats: make([]featureAcc, l.features)}
		if output {
			a.class = classAcc(sp)
		}
		out = append(out, a)
	}
	return out, nil
}

// classAcc returns the predicted-class accumulator of a classifier output:
// numeric, shape [batch, C] with a static C ≥ 2; nil for other outputs.
func classAcc(sp tensor.Spec) *featureAcc {
	if !numeric(sp.DataType) || len(sp.Shape) != 2 || sp.Shape[1] < 2 {
		return nil
	}
	return &featureAcc{classes: int(sp.Shape[1])}
}

// Add adds the rows of one batch: its inputs and outputs by name, in any
// order. Every tensor is valid (tensor.Validate).
func (b *Builder) Add(inputs, outputs []tensor.Tensor) error {
	n := int64(-1)
	for _, list := range [][]*tensorAcc{b.inputs, b.outputs} {
		for _, a := range list {
			t, ok := find(a.spec.Name, inputs, outputs)
			if !ok {
				return fmt.Errorf("no tensor %q", a.spec.Name)
			}
			r, err := a.add(t)
			if err != nil {
				return err
			}
			n = max(n, r)
		}
	}
	b.rows += max(n, 0)
	return nil
}

func find(name string, lists ...[]tensor.Tensor) (tensor.Tensor, bool) {
	for _, l := range lists {
		for _, t := range l {
			if t.Name == name {
				return t, true
			}
		}
	}
	return tensor.Tensor{}, false
}

// add accumulates every row of t and returns its row count.
func (a *tensorAcc) add(t tensor.Tensor) (int64, error) {
	n, per := rows(t)
	var elems [][]byte
	if t.DataType == tensor.Bytes {
		var err error
		if elems, err = tensor.BytesElements(t.Data, n*per); err != nil {
			return 0, err
		}
	}
	for r := range n {
		for o := range per {
			f := &a.feats[a.l.feature(t, o)]
			i := r*per + o
			if elems != nil {
				if f.counts == nil {
					f.counts = map[string]int64{}
				}
				f.counts[string(elems[i])]++
				f.total++
				continue
			}
			f.addValue(value(t.DataType, t.Data, i))
		}
		if a.class != nil && elems == nil && per >= 2 {
			a.class.addClass(argmax(t.DataType, t.Data, r*per, per))
		}
	}
	return n, nil
}

func (f *featureAcc) addValue(x float64) {
	f.total++
	switch {
	case math.IsNaN(x):
		f.nan++
	case math.IsInf(x, 0):
		f.inf++
	default:
		f.values = append(f.values, x)
	}
}

func (f *featureAcc) addClass(c int) {
	if f.counts == nil {
		f.counts = map[string]int64{}
	}
	f.counts[strconv.Itoa(c)]++
	f.total++
}

// argmax returns the position of the largest of per values from element
// start; NaN never wins.
func argmax(dt tensor.DataType, data []byte, start, per int64) int {
	best, bi := math.Inf(-1), 0
	for k := range per {
		if x := value(dt, data, start+k); x > best {
			best, bi = x, int(k)
		}
	}
	return bi
}

// Profile makes the profile of what was added.
func (b *Builder) Profile() *Profile {
	p := &Profile{Format: ProfileFormat, Rows: b.rows, Bins: b.bins}
	p.Inputs = b.finish(b.inputs)
	p.Outputs = b.finish(b.outputs)
	return p
}

func (b *Builder) finish(accs []*tensorAcc) []TensorProfile {
	out := make([]TensorProfile, 0, len(accs))
	for _, a := range accs {
		tp := TensorProfile{Name: a.spec.Name, DataType: a.spec.DataType.String(), Mode: a.l.mode, Features: make([]Feature, len(a.feats))}
		for i := range a.feats {
			if a.spec.DataType == tensor.Bytes {
				tp.Features[i] = a.feats[i].categoricalFeature(TopValues, nil)
			} else {
				tp.Features[i] = a.feats[i].numericFeature(b.bins)
			}
		}
		if a.class != nil {
			classes := make([]string, a.class.classes)
			for c := range classes {
				classes[c] = strconv.Itoa(c)
			}
			f := a.class.categoricalFeature(0, classes)
			tp.Class = &f
		}
		out = append(out, tp)
	}
	return out
}

// numericFeature makes a numeric feature with quantile edges.
func (f *featureAcc) numericFeature(bins int) Feature {
	v := f.values
	slices.Sort(v)
	var out Feature
	out.Edges = []float64{}
	if f.total > 0 {
		out.NaN = float64(f.nan) / float64(f.total)
		out.Inf = float64(f.inf) / float64(f.total)
	}
	if len(v) == 0 {
		out.Ref = []float64{0}
		return out
	}
	for i := 1; i < bins; i++ {
		e := quantile(v, float64(i)/float64(bins))
		if len(out.Edges) == 0 || e > out.Edges[len(out.Edges)-1] {
			out.Edges = append(out.Edges, e)
		}
	}
	// The top edge equal to the maximum would leave the last bin empty.
	if k := len(out.Edges); k > 0 && out.Edges[k-1] >= v[len(v)-1] {
		out.Edges = out.Edges[:k-1]
	}
	counts := make([]int64, len(out.Edges)+1)
	sum := 0.0
	for _, x := range v {
		counts[out.bin(x)]++
		sum += x
	}
	out.Ref = shares(counts, int64(len(v)))
	out.Min, out.Max = v[0], v[len(v)-1]
	out.Mean = sum / float64(len(v))
	ss := 0.0
	for _, x := range v {
		ss += (x - out.Mean) * (x - out.Mean)
	}
	out.Std = math.Sqrt(ss / float64(len(v)))
	return out
}

// quantile is the linear-interpolation quantile (type 7) of sorted v.
func quantile(v []float64, q float64) float64 {
	h := float64(len(v)-1) * q
	lo := int(math.Floor(h))
	if lo+1 >= len(v) {
		return v[len(v)-1]
	}
	return v[lo] + (h-float64(lo))*(v[lo+1]-v[lo])
}

func shares(counts []int64, total int64) []float64 {
	out := make([]float64, len(counts))
	if total == 0 {
		return out
	}
	for i, c := range counts {
		out[i] = float64(c) / float64(total)
	}
	return out
}

// categoricalFeature makes a categorical feature: the given values, or the
// top most frequent ones (ties by value), and the rest.
func (f *featureAcc) categoricalFeature(top int, values []string) Feature {
	if values == nil {
		values = make([]string, 0, len(f.counts))
		for v := range f.counts {
			values = append(values, v)
		}
		slices.SortFunc(values, func(a, b string) int {
			if c := cmp.Compare(f.counts[b], f.counts[a]); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		values = values[:min(len(values), top)]
	}
	counts := make([]int64, len(values)+1)
	kept := int64(0)
	for i, v := range values {
		counts[i] = f.counts[v]
		kept += counts[i]
	}
	counts[len(values)] = f.total - kept
	return Feature{Values: values, Ref: shares(counts, f.total)}
}
