package deploy

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const qualityRules = "prometheus/onnxserve-quality.rules.yml"

// requirePromtool returns promtool (Debian's prometheus package ships
// it), skipping when it is absent unless ONNXSERVE_REQUIRE_TOOLS=1, which
// `make test` sets once scripts/ensure-tools.sh found it.
func requirePromtool(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("ONNXSERVE_REQUIRE_TOOLS") == "1" {
			t.Fatalf("promtool required: %v", err)
		}
		t.Skipf("no promtool on PATH: %v", err)
	}
	return bin
}

// feedbackStream is a known stream of labelled rows: per minute, each
// (version, actual, predicted) pair gains n rows, and the regression
// counters grow by fixed amounts.
var feedbackStream = []struct {
	version, actual, predicted string
	n                          int
}{
	{"1", "cat", "cat", 3}, {"1", "cat", "dog", 1}, {"1", "dog", "dog", 2}, {"1", "dog", "cat", 2},
	{"1", "fox", "dog", 1},
	{"2", "cat", "cat", 4}, {"2", "dog", "dog", 3}, {"2", "fox", "fox", 1}, {"2", "fox", "cat", 1},
}

// TestQualityRules evaluates the recording rules with Prometheus's own
// rule engine (promtool test rules) against the stream above for an
// hour, and checks accuracy, per-class F1, macro F1, MAE and RMSE against
// values computed here from the same stream.
func TestQualityRules(t *testing.T) {
	bin := requirePromtool(t)
	if out, err := exec.Command(bin, "check", "rules", qualityRules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	const minutes = 60
	var in strings.Builder
	for _, s := range feedbackStream {
		fmt.Fprintf(&in, "      - series: 'onnxserve_labelled_predictions_total{model=\"m\",version=\"%s\",actual=\"%s\",predicted=\"%s\",instance=\"a\"}'\n        values: '0+%dx%d'\n",
			s.version, s.actual, s.predicted, s.n, minutes)
	}
	for _, s := range []struct {
		name string
		step float64
	}{{"onnxserve_labelled_abs_error_sum", 1.5}, {"onnxserve_labelled_squared_error_sum", 2.25}, {"onnxserve_labelled_rows_total", 4}} {
		fmt.Fprintf(&in, "      - series: '%s{model=\"r\",version=\"1\",instance=\"a\"}'\n        values: '0+%gx%d'\n", s.name, s.step, minutes)
	}

	// The expectations, from the per-minute counts (ratios are the same
	// over any whole number of minutes).
	type key struct{ version, class string }
	tp, support, predicted := map[key]float64{}, map[key]float64{}, map[key]float64{}
	total := map[string]float64{}
	for _, s := range feedbackStream {
		n := float64(s.n)
		support[key{s.version, s.actual}] += n
		predicted[key{s.version, s.predicted}] += n
		total[s.version] += n
		if s.actual == s.predicted {
			tp[key{s.version, s.actual}] += n
		}
	}
	var exp strings.Builder
	// Sums in another order differ in the last bits: both sides are
	// rounded to 1e-9 the way PromQL's round does it.
	sample := func(labels string, v float64) {
		step := 1e-9
		inv := 1 / step // at run time, as PromQL divides
		v = math.Floor(v*inv+0.5) / inv
		labels = labels[strings.IndexByte(labels, '{'):]
		fmt.Fprintf(&exp, "          - labels: '%s'\n            value: %s\n", labels, fmt.Sprint(v))
	}
	fmt.Fprintf(&exp, "      - expr: round(onnxserve:accuracy:ratio1h, 1e-9)\n        eval_time: %dm\n        exp_samples:\n", minutes)
	for _, v := range []string{"1", "2"} {
		sample(fmt.Sprintf(`onnxserve:accuracy:ratio1h{model="m",version="%s"}`, v), (tp[key{v, "cat"}]+tp[key{v, "dog"}]+tp[key{v, "fox"}])/total[v])
	}
	fmt.Fprintf(&exp, "      - expr: round(onnxserve:class_f1:ratio1h, 1e-9)\n        eval_time: %dm\n        exp_samples:\n", minutes)
	macro := map[string]float64{}
	var classes []key
	for k := range support {
		classes = append(classes, k)
	}
	for k := range predicted {
		if !slices.Contains(classes, k) {
			classes = append(classes, k)
		}
	}
	count := map[string]float64{}
	for _, k := range classes {
		f1 := 2 * tp[k] / (support[k] + predicted[k])
		sample(fmt.Sprintf(`onnxserve:class_f1:ratio1h{model="m",version="%s",class="%s"}`, k.version, k.class), f1)
		macro[k.version] += f1
		count[k.version]++
	}
	fmt.Fprintf(&exp, "      - expr: round(onnxserve:macro_f1:ratio1h, 1e-9)\n        eval_time: %dm\n        exp_samples:\n", minutes)
	for _, v := range []string{"1", "2"} {
		sample(fmt.Sprintf(`onnxserve:macro_f1:ratio1h{model="m",version="%s"}`, v), macro[v]/count[v])
	}
	fmt.Fprintf(&exp, "      - expr: round(onnxserve:mae:ratio1h, 1e-9)\n        eval_time: %dm\n        exp_samples:\n", minutes)
	sample(`onnxserve:mae:ratio1h{model="r",version="1"}`, 1.5/4)
	fmt.Fprintf(&exp, "      - expr: round(onnxserve:rmse:ratio1h, 1e-9)\n        eval_time: %dm\n        exp_samples:\n", minutes)
	sample(`onnxserve:rmse:ratio1h{model="r",version="1"}`, math.Sqrt(2.25/4))

	abs, err := filepath.Abs(qualityRules)
	if err != nil {
		t.Fatal(err)
	}
	test := fmt.Sprintf("rule_files:\n  - %s\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n%s    promql_expr_test:\n%s",
		abs, in.String(), exp.String())
	path := filepath.Join(t.TempDir(), "quality_test.yml")
	if err := os.WriteFile(path, []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "test", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s\ntest file:\n%s", err, out, test)
	}
}
