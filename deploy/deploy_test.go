package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/version"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Paths, relative to this package's folder (the working directory of its
// tests).
const (
	repoRoot      = ".."
	kubernetesDir = "kubernetes"
	kserveDir     = "kserve"
	guide         = "README.md"
)

// Health endpoints of the KServe v2 protocol, which the HTTP front end
// serves (checked against its source in TestHealthEndpointsExist).
const (
	livePath  = "/v2/health/live"
	readyPath = "/v2/health/ready"
)

// Where the images and the manifests put things.
const (
	imageModelDir  = "/models"
	kserveModelDir = "/mnt/models"
	serverImage    = "ghcr.io/onnxserve/onnxserve"
	serverContain  = "onnxserve"
	kserveContain  = "kserve-container"
	metricsPath    = "/metrics"
	queueDepthName = "onnxserve_queue_depth"
)

// Files in deploy/kubernetes that are not part of the kustomization's
// default set, each with the reason it is applied on its own.
var appliedAlone = map[string]string{
	"deployment-initsync.yaml": "alternative to deployment.yaml",
	"hpa-queue-depth.yaml":     "alternative to hpa.yaml",
	"podmonitor.yaml":          "needs the Prometheus Operator CRDs",
	"model-loader.yaml":        "temporary pod for copying models",
	"kustomization.yaml":       "the kustomization itself",
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return b
}

// ---------------------------------------------------------------------------
// What the server says about itself, read from its source as text.

// serverFacts are the defaults and flag names of cmd/serve.
type serverFacts struct {
	flags         map[string]bool
	httpPort      int32
	grpcPort      int32
	metricsPort   int32
	shutdownDelay time.Duration
	drainTimeout  time.Duration
}

var (
	flagNameRe    = regexp.MustCompile(`fs\.\w*Var\(&o\.\w+,\s*"([a-z0-9-]+)"`)
	intDefaultRe  = regexp.MustCompile(`fs\.IntVar\(&o\.\w+,\s*"([a-z0-9-]+)",\s*(\d+),`)
	durDefaultRe  = regexp.MustCompile(`fs\.DurationVar\(&o\.\w+,\s*"([a-z0-9-]+)",\s*(\d+)\s*\*\s*time\.(Millisecond|Second|Minute)\b`)
	durationUnits = map[string]time.Duration{"Millisecond": time.Millisecond, "Second": time.Second, "Minute": time.Minute}
)

func loadServerFacts(t *testing.T) serverFacts {
	t.Helper()
	src := string(read(t, filepath.Join(repoRoot, "cmd", "serve", "options.go")))
	f := serverFacts{flags: map[string]bool{}}
	for _, m := range flagNameRe.FindAllStringSubmatch(src, -1) {
		f.flags[m[1]] = true
	}
	ints := map[string]int32{}
	for _, m := range intDefaultRe.FindAllStringSubmatch(src, -1) {
		n, err := strconv.ParseInt(m[2], 10, 32)
		if err != nil {
			t.Fatalf("options.go: default of --%s: %v", m[1], err)
		}
		ints[m[1]] = int32(n)
	}
	durs := map[string]time.Duration{}
	for _, m := range durDefaultRe.FindAllStringSubmatch(src, -1) {
		n, _ := strconv.Atoi(m[2])
		durs[m[1]] = time.Duration(n) * durationUnits[m[3]]
	}
	for _, name := range []string{"http-port", "grpc-port", "metrics-port"} {
		if _, ok := ints[name]; !ok {
			t.Fatalf("options.go: no integer default found for --%s", name)
		}
	}
	for _, name := range []string{"shutdown-delay", "drain-timeout"} {
		if _, ok := durs[name]; !ok {
			t.Fatalf("options.go: no duration default found for --%s", name)
		}
	}
	for _, name := range []string{"model-repository", "log-format", "onnxruntime-lib"} {
		if !f.flags[name] {
			t.Fatalf("options.go: flag --%s not found; the flag pattern no longer matches the source", name)
		}
	}
	f.httpPort, f.grpcPort, f.metricsPort = ints["http-port"], ints["grpc-port"], ints["metrics-port"]
	f.shutdownDelay, f.drainTimeout = durs["shutdown-delay"], durs["drain-timeout"]
	return f
}

// TestServerDefaults pins the facts every manifest relies on. A changed
// default must be a deliberate change of the deployment too.
func TestServerDefaults(t *testing.T) {
	f := loadServerFacts(t)
	want := serverFacts{httpPort: 8000, grpcPort: 8001, metricsPort: 8002, shutdownDelay: 5 * time.Second, drainTimeout: 30 * time.Second}
	if f.httpPort != want.httpPort || f.grpcPort != want.grpcPort || f.metricsPort != want.metricsPort {
		t.Errorf("ports %d/%d/%d, the manifests assume %d/%d/%d", f.httpPort, f.grpcPort, f.metricsPort, want.httpPort, want.grpcPort, want.metricsPort)
	}
	if f.shutdownDelay != want.shutdownDelay || f.drainTimeout != want.drainTimeout {
		t.Errorf("shutdown delay %v, drain timeout %v; the manifests assume %v and %v", f.shutdownDelay, f.drainTimeout, want.shutdownDelay, want.drainTimeout)
	}
	readme := string(read(t, filepath.Join(repoRoot, "README.md")))
	for _, p := range []int32{f.httpPort, f.grpcPort, f.metricsPort} {
		if !strings.Contains(readme, fmt.Sprintf("| %d |", p)) {
			t.Errorf("README.md's port table does not list %d", p)
		}
	}
}

// TestHealthEndpointsExist checks that the HTTP front end still routes the
// two health paths the probes and HEALTHCHECKs call.
func TestHealthEndpointsExist(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot, "internal", "transport", "httpapi", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("httpapi sources: %v (%d files)", err, len(files))
	}
	var src strings.Builder
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			src.Write(read(t, f))
		}
	}
	for _, lit := range []string{`"v2"`, `"health"`, `"live"`, `"ready"`} {
		if !strings.Contains(src.String(), lit) {
			t.Errorf("internal/transport/httpapi no longer has the literal %s; are %s and %s still routed?", lit, livePath, readyPath)
		}
	}
}

// parseArgs reads container arguments the way the flag package does:
// --name=value or --name value, the last occurrence winning.
func parseArgs(args []string) (map[string]string, error) {
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return nil, fmt.Errorf("argument %q is not a flag", a)
		}
		name := strings.TrimLeft(a, "-")
		if k, v, ok := strings.Cut(name, "="); ok {
			out[k] = v
			continue
		}
		if i+1 >= len(args) || strings.HasPrefix(args[i+1], "-") {
			return nil, fmt.Errorf("flag %q has no value", a)
		}
		out[name] = args[i+1]
		i++
	}
	return out, nil
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    map[string]string
		wantErr bool
	}{
		{"equals", []string{"--a=1", "-b=2"}, map[string]string{"a": "1", "b": "2"}, false},
		{"separate", []string{"--a", "1"}, map[string]string{"a": "1"}, false},
		{"last wins", []string{"--a", "1", "--a=2"}, map[string]string{"a": "2"}, false},
		{"missing value", []string{"--a"}, nil, true},
		{"positional", []string{"x"}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseArgs(tc.args)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// checkServerArgs checks a server container's arguments: every flag exists,
// and the ports, if given, are the container's.
func checkServerArgs(t *testing.T, f serverFacts, args []string) map[string]string {
	t.Helper()
	flags, err := parseArgs(args)
	if err != nil {
		t.Fatalf("args %q: %v", args, err)
	}
	for name := range flags {
		if !f.flags[name] {
			t.Errorf("argument --%s is not a flag of cmd/serve", name)
		}
	}
	return flags
}

// flagDuration returns a duration flag's value, or the server's default.
func flagDuration(t *testing.T, flags map[string]string, name string, def time.Duration) time.Duration {
	t.Helper()
	v, ok := flags[name]
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("--%s=%q: %v", name, v, err)
	}
	return d
}

// flagPort returns a port flag's value, or the server's default.
func flagPort(t *testing.T, flags map[string]string, name string, def int32) int32 {
	t.Helper()
	v, ok := flags[name]
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		t.Fatalf("--%s=%q: %v", name, v, err)
	}
	return int32(n)
}

// ---------------------------------------------------------------------------
// Strict decoding.

// yamlDocs splits a multi-document YAML file on its "---" lines, dropping
// documents that hold only comments.
func yamlDocs(data []byte) []string {
	var out []string
	for _, d := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(data), -1) {
		for _, line := range strings.Split(d, "\n") {
			if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "#") {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

// decodeStrict decodes one YAML document into v as the API server's strict
// field validation would: a duplicate key, an unknown field or a field in
// the wrong case is an error.
func decodeStrict(doc string, v any) error {
	js, err := yaml.YAMLToJSONStrict([]byte(doc))
	if err != nil {
		return err
	}
	strict, err := k8sjson.UnmarshalStrict(js, v, k8sjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		return fmt.Errorf("strict decoding: %v", strict)
	}
	// encoding/json as a second opinion on unknown fields.
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(reflectNew(v)); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("trailing data after the document")
	}
	return nil
}

// reflectNew returns a new zero value of the type v points to, so the
// second decoder does not merge into the first one's result.
func reflectNew(v any) any {
	return reflect.New(reflect.TypeOf(v).Elem()).Interface()
}

func TestDecodeStrictRejects(t *testing.T) {
	tests := []struct {
		name string
		doc  string
	}{
		{"unknown field", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicaz: 2\n"},
		{"wrong case", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  Replicas: 2\n"},
		{"duplicate key", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 2\n  replicas: 3\n"},
		{"unknown container field", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: x\n          imagePullPolicy: IfNotPresent\n          readinesProbe: {}\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := decodeStrict(tc.doc, &appsv1.Deployment{}); err == nil {
				t.Errorf("decoded without error:\n%s", tc.doc)
			}
		})
	}
	t.Run("accepts a valid document", func(t *testing.T) {
		var d appsv1.Deployment
		if err := decodeStrict("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 2\n", &d); err != nil {
			t.Fatal(err)
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
			t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
		}
	})
}

func TestYAMLDocs(t *testing.T) {
	in := "# only a comment\n---\na: 1\n---   \n\nb: 2\n---\n"
	got := yamlDocs([]byte(in))
	if len(got) != 2 || !strings.Contains(got[0], "a: 1") || !strings.Contains(got[1], "b: 2") {
		t.Errorf("yamlDocs = %q, want the two documents a and b", got)
	}
}

// ---------------------------------------------------------------------------
// Custom resources without Go types in k8s.io/api: each struct lists the
// fields of the CRD that the manifests use, so a field outside them (a typo,
// or a field these structs were not taught) fails strict decoding.

// podMonitor is monitoring.coreos.com/v1 PodMonitor.
type podMonitor struct {
	metav1.TypeMeta `json:",inline"`
	ObjectMeta      metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		PodMetricsEndpoints []struct {
			Port          string `json:"port,omitempty"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

// kustomization is kustomize.config.k8s.io/v1beta1 Kustomization.
type kustomization struct {
	metav1.TypeMeta `json:",inline"`
	Resources       []string `json:"resources"`
	Images          []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

// servingRuntime is serving.kserve.io/v1alpha1 ServingRuntime.
type servingRuntime struct {
	metav1.TypeMeta `json:",inline"`
	ObjectMeta      metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Annotations           map[string]string `json:"annotations,omitempty"`
		SupportedModelFormats []struct {
			Name       string `json:"name"`
			Version    string `json:"version,omitempty"`
			AutoSelect *bool  `json:"autoSelect,omitempty"`
			Priority   *int32 `json:"priority,omitempty"`
		} `json:"supportedModelFormats"`
		ProtocolVersions []string           `json:"protocolVersions"`
		MultiModel       *bool              `json:"multiModel,omitempty"`
		Volumes          []corev1.Volume    `json:"volumes,omitempty"`
		Containers       []corev1.Container `json:"containers"`
	} `json:"spec"`
}

// inferenceService is serving.kserve.io/v1beta1 InferenceService.
type inferenceService struct {
	metav1.TypeMeta `json:",inline"`
	ObjectMeta      metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Predictor struct {
			MinReplicas                   *int32 `json:"minReplicas,omitempty"`
			TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty"`
			TimeoutSeconds                *int64 `json:"timeout,omitempty"`
			MaxReplicas                   int32  `json:"maxReplicas,omitempty"`
			CanaryTrafficPercent          *int64 `json:"canaryTrafficPercent,omitempty"`
			Model                         struct {
				ModelFormat struct {
					Name    string `json:"name"`
					Version string `json:"version,omitempty"`
				} `json:"modelFormat"`
				Runtime         string `json:"runtime,omitempty"`
				ProtocolVersion string `json:"protocolVersion,omitempty"`
				StorageURI      string `json:"storageUri"`
			} `json:"model"`
		} `json:"predictor"`
	} `json:"spec"`
}

// ---------------------------------------------------------------------------
// Loading the manifests.

// manifests are the decoded documents of deploy/kubernetes, by kind, each
// keyed by "file/name".
type manifests struct {
	deployments   map[string]*appsv1.Deployment
	services      map[string]*corev1.Service
	pvcs          map[string]*corev1.PersistentVolumeClaim
	pods          map[string]*corev1.Pod
	pdbs          map[string]*policyv1.PodDisruptionBudget
	hpas          map[string]*autoscalingv2.HorizontalPodAutoscaler
	podMonitors   map[string]*podMonitor
	netpols       map[string]*networkingv1.NetworkPolicy
	kustomization *kustomization
	files         []string
}

func loadKubernetes(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
		pvcs:        map[string]*corev1.PersistentVolumeClaim{},
		pods:        map[string]*corev1.Pod{},
		pdbs:        map[string]*policyv1.PodDisruptionBudget{},
		hpas:        map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		podMonitors: map[string]*podMonitor{},
		netpols:     map[string]*networkingv1.NetworkPolicy{},
	}
	paths, err := filepath.Glob(filepath.Join(kubernetesDir, "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests in %s: %v", kubernetesDir, err)
	}
	for _, p := range paths {
		file := filepath.Base(p)
		m.files = append(m.files, file)
		docs := yamlDocs(read(t, p))
		if len(docs) == 0 {
			t.Errorf("%s holds no document", file)
		}
		for i, doc := range docs {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s document %d: %v", file, i+1, err)
			}
			var obj any
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 Deployment":
				obj = &appsv1.Deployment{}
			case "v1 Service":
				obj = &corev1.Service{}
			case "v1 PersistentVolumeClaim":
				obj = &corev1.PersistentVolumeClaim{}
			case "v1 Pod":
				obj = &corev1.Pod{}
			case "policy/v1 PodDisruptionBudget":
				obj = &policyv1.PodDisruptionBudget{}
			case "autoscaling/v2 HorizontalPodAutoscaler":
				obj = &autoscalingv2.HorizontalPodAutoscaler{}
			case "monitoring.coreos.com/v1 PodMonitor":
				obj = &podMonitor{}
			case "networking.k8s.io/v1 NetworkPolicy":
				obj = &networkingv1.NetworkPolicy{}
			case "kustomize.config.k8s.io/v1beta1 Kustomization":
				obj = &kustomization{}
			default:
				t.Fatalf("%s document %d: no decoder for %s %s; add one to the test", file, i+1, tm.APIVersion, tm.Kind)
			}
			if err := decodeStrict(doc, obj); err != nil {
				t.Fatalf("%s document %d (%s): %v", file, i+1, tm.Kind, err)
			}
			name := func(meta metav1.ObjectMeta) string {
				if meta.Name == "" {
					t.Errorf("%s document %d (%s) has no metadata.name", file, i+1, tm.Kind)
				}
				return file + "/" + meta.Name
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				m.deployments[name(o.ObjectMeta)] = o
			case *corev1.Service:
				m.services[name(o.ObjectMeta)] = o
			case *corev1.PersistentVolumeClaim:
				m.pvcs[name(o.ObjectMeta)] = o
			case *corev1.Pod:
				m.pods[name(o.ObjectMeta)] = o
			case *policyv1.PodDisruptionBudget:
				m.pdbs[name(o.ObjectMeta)] = o
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpas[name(o.ObjectMeta)] = o
			case *podMonitor:
				m.podMonitors[name(o.ObjectMeta)] = o
			case *networkingv1.NetworkPolicy:
				m.netpols[name(o.ObjectMeta)] = o
			case *kustomization:
				if m.kustomization != nil {
					t.Fatalf("%s: a second Kustomization", file)
				}
				m.kustomization = o
			}
		}
	}
	return m
}

// one returns the only value of a map, failing when there is not exactly one.
func one[V any](t *testing.T, what string, m map[string]V) (string, V) {
	t.Helper()
	if len(m) != 1 {
		t.Fatalf("want exactly one %s, got %d", what, len(m))
	}
	for k, v := range m {
		return k, v
	}
	panic("unreachable")
}

func container(t *testing.T, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// resolvePort turns a probe's or Service's port (a number or a container
// port name) into a number.
func resolvePort(t *testing.T, c *corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, p.StrVal)
	return 0
}

func checkHTTPProbe(t *testing.T, what string, c *corev1.Container, p *corev1.Probe, path string, port int32) {
	t.Helper()
	if p == nil {
		t.Errorf("%s probe missing", what)
		return
	}
	if p.HTTPGet == nil {
		t.Errorf("%s probe is not an HTTP GET", what)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s probe path %q, want %q", what, p.HTTPGet.Path, path)
	}
	if got := resolvePort(t, c, p.HTTPGet.Port); got != port {
		t.Errorf("%s probe port %d, want the HTTP port %d", what, got, port)
	}
}

// preStopSleep returns how long the preStop hook sleeps.
func preStopSleep(t *testing.T, c *corev1.Container) time.Duration {
	t.Helper()
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		t.Fatalf("container %s has no preStop hook", c.Name)
	}
	h := c.Lifecycle.PreStop
	switch {
	case h.Sleep != nil:
		return time.Duration(h.Sleep.Seconds) * time.Second
	case h.Exec != nil && len(h.Exec.Command) == 2 && h.Exec.Command[0] == "sleep":
		n, err := strconv.Atoi(h.Exec.Command[1])
		if err != nil {
			t.Fatalf("preStop %q: %v", h.Exec.Command, err)
		}
		return time.Duration(n) * time.Second
	}
	t.Fatalf("preStop hook of %s is not a sleep: %+v", c.Name, h)
	return 0
}

// podLabels returns a Deployment's pod labels after checking that its own
// selector selects them.
func podLabels(t *testing.T, d *appsv1.Deployment) labels.Set {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		t.Fatalf("deployment %s selector: %v", d.Name, err)
	}
	set := labels.Set(d.Spec.Template.Labels)
	if sel.Empty() || !sel.Matches(set) {
		t.Fatalf("deployment %s: selector %s does not select its pod labels %v", d.Name, sel, set)
	}
	return set
}

func selects(t *testing.T, what string, s *metav1.LabelSelector, set labels.Set) {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		t.Fatalf("%s selector: %v", what, err)
	}
	if sel.Empty() || !sel.Matches(set) {
		t.Errorf("%s selector %q does not select the server pods %v", what, sel, set)
	}
}

// ---------------------------------------------------------------------------
// Kubernetes.

func TestKubernetesDeployments(t *testing.T) {
	f := loadServerFacts(t)
	m := loadKubernetes(t)
	if len(m.deployments) != 2 {
		t.Fatalf("want the two alternative Deployments (deployment.yaml, deployment-initsync.yaml), got %d", len(m.deployments))
	}
	_, pvc := one(t, "PersistentVolumeClaim", m.pvcs)
	uid := dockerUser(t, "Dockerfile")
	var names []string
	for key, d := range m.deployments {
		t.Run(key, func(t *testing.T) {
			names = append(names, d.Name)
			podLabels(t, d)
			spec := &d.Spec.Template.Spec
			c := container(t, spec, serverContain)
			if c.Image != serverImage+":"+serverVersion(t) {
				t.Errorf("image %q, want %s:%s", c.Image, serverImage, serverVersion(t))
			}

			ports := map[string]int32{}
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
			wantPorts := map[string]int32{"http": f.httpPort, "grpc": f.grpcPort, "metrics": f.metricsPort}
			if fmt.Sprint(ports) != fmt.Sprint(wantPorts) {
				t.Errorf("container ports %v, want %v", ports, wantPorts)
			}

			flags := checkServerArgs(t, f, c.Args)
			for name, port := range map[string]int32{"http-port": f.httpPort, "grpc-port": f.grpcPort, "metrics-port": f.metricsPort} {
				if got := flagPort(t, flags, name, port); got != port {
					t.Errorf("--%s=%d, but the container port is %d", name, got, port)
				}
			}
			if flags["model-repository"] != imageModelDir {
				t.Errorf("--model-repository=%q, want %s", flags["model-repository"], imageModelDir)
			}
			if flags["log-format"] != "json" {
				t.Errorf("--log-format=%q, want json", flags["log-format"])
			}
			checkAdminToken(t, spec, c, flags)
			mount := mountAt(t, c, imageModelDir)
			if !mount.ReadOnly {
				t.Errorf("the server mounts %s read-write; replicas must not write the shared repository", imageModelDir)
			}

			checkHTTPProbe(t, "liveness", c, c.LivenessProbe, livePath, f.httpPort)
			checkHTTPProbe(t, "readiness", c, c.ReadinessProbe, readyPath, f.httpPort)
			// Startup on liveness: a model that fails to load keeps the pod
			// unready, it does not make the kubelet restart it.
			checkHTTPProbe(t, "startup", c, c.StartupProbe, livePath, f.httpPort)
			if p := c.StartupProbe; p != nil {
				budget := time.Duration(p.PeriodSeconds*p.FailureThreshold) * time.Second
				if budget < 2*time.Minute {
					t.Errorf("startup probe allows %v for models to load; want at least 2m", budget)
				}
			}

			grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
			need := preStopSleep(t, c) + flagDuration(t, flags, "shutdown-delay", f.shutdownDelay) + flagDuration(t, flags, "drain-timeout", f.drainTimeout)
			if grace == nil {
				t.Errorf("no terminationGracePeriodSeconds; it must exceed preStop + shutdown delay + drain timeout = %v", need)
			} else if time.Duration(*grace)*time.Second <= need {
				t.Errorf("terminationGracePeriodSeconds %d must exceed preStop + shutdown delay + drain timeout = %v", *grace, need)
			}

			checkRestricted(t, spec)
			sc := spec.SecurityContext
			if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
				t.Errorf("pod securityContext must run as a non-root UID: %+v", sc)
			} else if *sc.RunAsUser != uid {
				t.Errorf("runAsUser %d differs from the image's USER %d", *sc.RunAsUser, uid)
			}
			for _, cc := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
				csc := cc.SecurityContext
				if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
					csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
					csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
					t.Errorf("container %s: want readOnlyRootFilesystem, no privilege escalation, all capabilities dropped; got %+v", cc.Name, csc)
				}
				checkGuaranteed(t, &cc)
			}

			vol := volume(t, spec, mount.Name)
			switch {
			case vol.PersistentVolumeClaim != nil:
				if vol.PersistentVolumeClaim.ClaimName != pvc.Name {
					t.Errorf("models volume claims %q, pvc.yaml defines %q", vol.PersistentVolumeClaim.ClaimName, pvc.Name)
				}
			case vol.EmptyDir != nil:
				checkInitSync(t, spec, mount.Name)
			default:
				t.Errorf("models volume %q is neither the PVC nor an emptyDir filled by an init container", mount.Name)
			}
		})
	}
	if len(names) == 2 && names[0] != names[1] {
		t.Errorf("the alternative Deployments are named %q and %q; one name makes them replace each other and keeps the Service, PDB and HPA pointing at the one applied", names[0], names[1])
	}
}

// serverVersion returns the image tag the manifests use: the server's
// version.
func serverVersion(t *testing.T) string {
	t.Helper()
	src := string(read(t, filepath.Join(repoRoot, "cmd", "serve", "main.go")))
	m := regexp.MustCompile(`(?m)^var version = "([^"]+)"`).FindStringSubmatch(src)
	if m == nil {
		t.Fatal("cmd/serve/main.go: no `var version = \"...\"`")
	}
	return m[1]
}

func mountAt(t *testing.T, c *corev1.Container, path string) corev1.VolumeMount {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == path {
			return vm
		}
	}
	t.Fatalf("container %s mounts nothing at %s", c.Name, path)
	return corev1.VolumeMount{}
}

func volume(t *testing.T, spec *corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %q", name)
	return corev1.Volume{}
}

// checkGuaranteed checks that a container's requests equal its limits for
// CPU and memory, which gives the pod the Guaranteed QoS class.
func checkGuaranteed(t *testing.T, c *corev1.Container) {
	t.Helper()
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[r]
		lim, okLim := c.Resources.Limits[r]
		if !okReq || !okLim || req.Cmp(lim) != 0 {
			t.Errorf("container %s: %s request %v and limit %v must both be set and equal", c.Name, r, req.String(), lim.String())
		}
	}
}

// checkInitSync checks that an init container fills the models volume
// before the server starts.
func checkInitSync(t *testing.T, spec *corev1.PodSpec, volumeName string) {
	t.Helper()
	if len(spec.InitContainers) == 0 {
		t.Fatalf("models volume %q is an emptyDir but no init container fills it", volumeName)
	}
	for _, ic := range spec.InitContainers {
		for _, vm := range ic.VolumeMounts {
			if vm.Name != volumeName {
				continue
			}
			if vm.ReadOnly {
				t.Errorf("init container %s mounts the models volume read-only", ic.Name)
			}
			if !slices.Contains(ic.Args, vm.MountPath) {
				t.Errorf("init container %s does not write to its mount %s (args %q)", ic.Name, vm.MountPath, ic.Args)
			}
			return
		}
	}
	t.Errorf("no init container mounts the models volume %q", volumeName)
}

func TestKubernetesService(t *testing.T) {
	f := loadServerFacts(t)
	m := loadKubernetes(t)
	_, svc := one(t, "Service", m.services)
	for _, d := range m.deployments {
		set := podLabels(t, d)
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(set) || len(svc.Spec.Selector) == 0 {
			t.Errorf("Service selector %v does not select %s's pods %v", svc.Spec.Selector, d.Name, set)
		}
		c := container(t, &d.Spec.Template.Spec, serverContain)
		want := map[string]struct {
			port     int32
			protocol string
		}{"http": {f.httpPort, "http"}, "grpc": {f.grpcPort, "kubernetes.io/h2c"}}
		if len(svc.Spec.Ports) != len(want) {
			t.Errorf("Service has %d ports, want http and grpc only (metrics stay off the Service)", len(svc.Spec.Ports))
		}
		for _, p := range svc.Spec.Ports {
			w, ok := want[p.Name]
			if !ok {
				t.Errorf("Service port %q is not expected", p.Name)
				continue
			}
			if p.Port != w.port || resolvePort(t, c, p.TargetPort) != w.port {
				t.Errorf("Service port %s: %d -> %v, want %d -> container %d", p.Name, p.Port, p.TargetPort.String(), w.port, w.port)
			}
			if p.AppProtocol == nil || *p.AppProtocol != w.protocol {
				got := "unset"
				if p.AppProtocol != nil {
					got = *p.AppProtocol
				}
				t.Errorf("Service port %s: appProtocol %s, want %s", p.Name, got, w.protocol)
			}
		}
	}
}

func TestKubernetesAutoscaling(t *testing.T) {
	m := loadKubernetes(t)
	deployName := ""
	for _, d := range m.deployments {
		deployName = d.Name
	}
	if len(m.hpas) != 2 {
		t.Fatalf("want the two alternative HPAs (hpa.yaml, hpa-queue-depth.yaml), got %d", len(m.hpas))
	}
	var hpaNames []string
	for key, h := range m.hpas {
		t.Run(key, func(t *testing.T) {
			hpaNames = append(hpaNames, h.Name)
			ref := h.Spec.ScaleTargetRef
			if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != deployName {
				t.Errorf("scaleTargetRef %+v, want apps/v1 Deployment %s", ref, deployName)
			}
			if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
				t.Errorf("replicas %v..%d: want at least 2 and max >= min", h.Spec.MinReplicas, h.Spec.MaxReplicas)
			}
			var cpu, queue bool
			for _, mt := range h.Spec.Metrics {
				switch {
				case mt.Type == autoscalingv2.ResourceMetricSourceType && mt.Resource != nil && mt.Resource.Name == corev1.ResourceCPU:
					cpu = mt.Resource.Target.Type == autoscalingv2.UtilizationMetricType && mt.Resource.Target.AverageUtilization != nil
				case mt.Type == autoscalingv2.PodsMetricSourceType && mt.Pods != nil && mt.Pods.Metric.Name == queueDepthName:
					queue = mt.Pods.Target.Type == autoscalingv2.AverageValueMetricType && mt.Pods.Target.AverageValue != nil &&
						mt.Pods.Target.AverageValue.Cmp(resource.MustParse("0")) > 0
				default:
					t.Errorf("unexpected metric %+v", mt)
				}
			}
			if !cpu {
				t.Error("no CPU utilization target")
			}
			if strings.HasPrefix(key, "hpa-queue-depth.yaml/") && !queue {
				t.Errorf("no Pods metric %s with a positive average value", queueDepthName)
			}
		})
	}
	if len(hpaNames) == 2 && hpaNames[0] != hpaNames[1] {
		t.Errorf("the alternative HPAs are named %q and %q; two HPAs on one Deployment fight", hpaNames[0], hpaNames[1])
	}
	metricsSrc := string(read(t, filepath.Join(repoRoot, "internal", "batcher", "metrics.go")))
	if !strings.Contains(metricsSrc, `"`+queueDepthName+`"`) {
		t.Errorf("internal/batcher/metrics.go no longer defines %s, which hpa-queue-depth.yaml scales on", queueDepthName)
	}
}

func TestKubernetesDisruptionBudget(t *testing.T) {
	m := loadKubernetes(t)
	_, pdb := one(t, "PodDisruptionBudget", m.pdbs)
	for _, d := range m.deployments {
		selects(t, "PodDisruptionBudget", pdb.Spec.Selector, podLabels(t, d))
	}
	if (pdb.Spec.MaxUnavailable == nil) == (pdb.Spec.MinAvailable == nil) {
		t.Fatalf("set exactly one of maxUnavailable and minAvailable")
	}
	if mu := pdb.Spec.MaxUnavailable; mu != nil && mu.Type == intstr.Int && mu.IntVal < 1 {
		t.Errorf("maxUnavailable %d blocks every drain", mu.IntVal)
	}
}

func TestKubernetesPodMonitor(t *testing.T) {
	f := loadServerFacts(t)
	m := loadKubernetes(t)
	_, pm := one(t, "PodMonitor", m.podMonitors)
	durationRe := regexp.MustCompile(`^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`)
	for _, d := range m.deployments {
		selects(t, "PodMonitor", &pm.Spec.Selector, podLabels(t, d))
		c := container(t, &d.Spec.Template.Spec, serverContain)
		if len(pm.Spec.PodMetricsEndpoints) != 1 {
			t.Fatalf("want one metrics endpoint, got %d", len(pm.Spec.PodMetricsEndpoints))
		}
		ep := pm.Spec.PodMetricsEndpoints[0]
		if got := resolvePort(t, c, intstr.FromString(ep.Port)); got != f.metricsPort {
			t.Errorf("PodMonitor scrapes port %q = %d, want the metrics port %d", ep.Port, got, f.metricsPort)
		}
		if ep.Path != metricsPath {
			t.Errorf("PodMonitor path %q, want %s", ep.Path, metricsPath)
		}
		for _, dur := range []string{ep.Interval, ep.ScrapeTimeout} {
			if dur != "" && !durationRe.MatchString(dur) {
				t.Errorf("%q is not a Prometheus duration", dur)
			}
		}
	}
}

func TestKubernetesStorage(t *testing.T) {
	m := loadKubernetes(t)
	_, pvc := one(t, "PersistentVolumeClaim", m.pvcs)
	if !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) {
		t.Errorf("PVC access modes %v: replicas on different nodes need ReadWriteMany", pvc.Spec.AccessModes)
	}
	if q, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; !ok || q.IsZero() {
		t.Error("PVC requests no storage")
	}
	_, loader := one(t, "Pod", m.pods)
	var mounted bool
	for _, v := range loader.Spec.Volumes {
		if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc.Name && !v.PersistentVolumeClaim.ReadOnly {
			for _, c := range loader.Spec.Containers {
				for _, vm := range c.VolumeMounts {
					mounted = mounted || (vm.Name == v.Name && !vm.ReadOnly)
				}
			}
		}
	}
	if !mounted {
		t.Errorf("model-loader pod does not mount claim %s read-write", pvc.Name)
	}
}

func TestKustomization(t *testing.T) {
	m := loadKubernetes(t)
	k := m.kustomization
	if k == nil {
		t.Fatal("no kustomization.yaml")
	}
	for _, r := range k.Resources {
		if !slices.Contains(m.files, r) {
			t.Errorf("kustomization resource %s is not a file in %s", r, kubernetesDir)
		}
		if why, ok := appliedAlone[r]; ok {
			t.Errorf("kustomization includes %s (%s)", r, why)
		}
	}
	for _, file := range m.files {
		if _, ok := appliedAlone[file]; !ok && !slices.Contains(k.Resources, file) {
			t.Errorf("%s is neither in the kustomization nor listed as applied on its own", file)
		}
	}
	if len(k.Images) != 1 || k.Images[0].Name != serverImage {
		t.Errorf("kustomization images %+v: want one entry for %s", k.Images, serverImage)
	}
}

// ---------------------------------------------------------------------------
// KServe.

func loadKServe(t *testing.T) (map[string]*servingRuntime, []*inferenceService) {
	t.Helper()
	runtimes := map[string]*servingRuntime{}
	var isvcs []*inferenceService
	for _, file := range []string{"servingruntime.yaml", "inferenceservice.yaml"} {
		for i, doc := range yamlDocs(read(t, filepath.Join(kserveDir, file))) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s document %d: %v", file, i+1, err)
			}
			switch tm.APIVersion + " " + tm.Kind {
			case "serving.kserve.io/v1alpha1 ServingRuntime":
				var r servingRuntime
				if err := decodeStrict(doc, &r); err != nil {
					t.Fatalf("%s document %d: %v", file, i+1, err)
				}
				runtimes[r.ObjectMeta.Name] = &r
			case "serving.kserve.io/v1beta1 InferenceService":
				var s inferenceService
				if err := decodeStrict(doc, &s); err != nil {
					t.Fatalf("%s document %d: %v", file, i+1, err)
				}
				isvcs = append(isvcs, &s)
			default:
				t.Fatalf("%s document %d: unexpected %s %s", file, i+1, tm.APIVersion, tm.Kind)
			}
		}
	}
	return runtimes, isvcs
}

func TestKServeServingRuntimes(t *testing.T) {
	f := loadServerFacts(t)
	runtimes, _ := loadKServe(t)
	if _, ok := runtimes["onnxserve"]; !ok {
		t.Fatal("no ServingRuntime named onnxserve")
	}
	for name, r := range runtimes {
		t.Run(name, func(t *testing.T) {
			var onnx bool
			for _, mf := range r.Spec.SupportedModelFormats {
				onnx = onnx || mf.Name == "onnx"
			}
			if !onnx {
				t.Error("does not support the onnx model format")
			}
			if !slices.Contains(r.Spec.ProtocolVersions, "v2") {
				t.Errorf("protocolVersions %v lack v2", r.Spec.ProtocolVersions)
			}
			if len(r.Spec.Containers) != 1 {
				t.Fatalf("want one container, got %d", len(r.Spec.Containers))
			}
			c := &r.Spec.Containers[0]
			if c.Name != kserveContain {
				t.Errorf("container %q, KServe wants %q", c.Name, kserveContain)
			}
			if c.Image != serverImage+":"+serverVersion(t) {
				t.Errorf("image %q, want %s:%s", c.Image, serverImage, serverVersion(t))
			}
			checkImage(t, c.Image)
			flags := checkServerArgs(t, f, c.Args)
			if flags["model-repository"] != kserveModelDir {
				t.Errorf("--model-repository=%q; KServe's storage initializer fills %s", flags["model-repository"], kserveModelDir)
			}
			checkAdminToken(t, &corev1.PodSpec{Volumes: r.Spec.Volumes, Containers: r.Spec.Containers}, c, flags)
			httpPort := flagPort(t, flags, "http-port", f.httpPort)
			grpcPort := flagPort(t, flags, "grpc-port", f.grpcPort)
			var ports []int32
			for _, p := range c.Ports {
				ports = append(ports, p.ContainerPort)
			}
			// KServe routes to the first port; Knative allows only one.
			want := []int32{httpPort}
			if slices.Contains(r.Spec.ProtocolVersions, "grpc-v2") {
				want = append(want, grpcPort)
			}
			if !slices.Equal(ports, want) {
				t.Errorf("ports %v, want %v for protocols %v", ports, want, r.Spec.ProtocolVersions)
			}
			// Startup and liveness on /v2/health/live: a slow or broken
			// model must leave the pod unready, not restart it.
			checkHTTPProbe(t, "startup", c, c.StartupProbe, livePath, httpPort)
			checkHTTPProbe(t, "liveness", c, c.LivenessProbe, livePath, httpPort)
			checkHTTPProbe(t, "readiness", c, c.ReadinessProbe, readyPath, httpPort)
			// A ServingRuntime has no pod securityContext: every rule of
			// Pod Security "restricted" must hold on the container.
			checkRestricted(t, &corev1.PodSpec{Containers: r.Spec.Containers})
			csc := c.SecurityContext
			if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem || csc.RunAsGroup == nil || *csc.RunAsGroup == 0 {
				t.Errorf("container securityContext %+v: want readOnlyRootFilesystem and a non-root runAsGroup", csc)
			}
			checkGuaranteed(t, c)
			if r.Spec.Annotations["prometheus.kserve.io/port"] != strconv.Itoa(int(f.metricsPort)) || r.Spec.Annotations["prometheus.kserve.io/path"] != metricsPath {
				t.Errorf("prometheus annotations %v, want port %d path %s", r.Spec.Annotations, f.metricsPort, metricsPath)
			}
		})
	}
}

func TestKServeInferenceServices(t *testing.T) {
	f := loadServerFacts(t)
	runtimes, isvcs := loadKServe(t)
	if len(isvcs) == 0 {
		t.Fatal("no InferenceService")
	}
	var canary bool
	for _, s := range isvcs {
		t.Run(s.ObjectMeta.Name, func(t *testing.T) {
			mdl := s.Spec.Predictor.Model
			r, ok := runtimes[mdl.Runtime]
			if !ok {
				t.Fatalf("runtime %q is not defined in servingruntime.yaml", mdl.Runtime)
			}
			var format bool
			for _, mf := range r.Spec.SupportedModelFormats {
				format = format || (mf.Name == mdl.ModelFormat.Name && (mf.Version == "" || mf.Version == mdl.ModelFormat.Version))
			}
			if !format {
				t.Errorf("runtime %s does not support model format %+v", r.ObjectMeta.Name, mdl.ModelFormat)
			}
			if mdl.StorageURI == "" {
				t.Error("no storageUri")
			}
			mode := s.ObjectMeta.Annotations["serving.kserve.io/deploymentMode"]
			knative := mode == "Serverless" || mode == "Knative"
			if !knative && mode != "RawDeployment" && mode != "Standard" {
				t.Errorf("deploymentMode %q: set it, the default differs between KServe releases", mode)
			}
			// The pod's grace must outlast the shutdown delay and the drain:
			// in Standard mode it is the predictor's
			// terminationGracePeriodSeconds (Kubernetes' default is 30s),
			// in Knative mode the revision timeout.
			flags := checkServerArgs(t, f, r.Spec.Containers[0].Args)
			need := flagDuration(t, flags, "shutdown-delay", f.shutdownDelay) + flagDuration(t, flags, "drain-timeout", f.drainTimeout)
			grace, field := s.Spec.Predictor.TerminationGracePeriodSeconds, "terminationGracePeriodSeconds"
			if knative {
				grace, field = s.Spec.Predictor.TimeoutSeconds, "timeout"
			}
			if grace == nil || time.Duration(*grace)*time.Second <= need {
				t.Errorf("predictor %s %v must be set and exceed the shutdown delay + drain timeout = %v", field, grace, need)
			}
			if knative && len(r.Spec.Containers[0].Ports) != 1 {
				t.Errorf("Knative mode needs a runtime with one port; %s has %d", r.ObjectMeta.Name, len(r.Spec.Containers[0].Ports))
			}
			if p := s.Spec.Predictor.CanaryTrafficPercent; p != nil {
				canary = true
				if !knative {
					t.Errorf("canaryTrafficPercent needs Knative mode, got %q", mode)
				}
				if *p <= 0 || *p >= 100 {
					t.Errorf("canaryTrafficPercent %d: want a share between 1 and 99", *p)
				}
			}
		})
	}
	if !canary {
		t.Error("no InferenceService shows canaryTrafficPercent")
	}
}

// ---------------------------------------------------------------------------
// Dockerfiles.

// dockerfile is a parsed Dockerfile: its stages and its global ARG defaults.
type dockerfile struct {
	stages []instructions.Stage
	args   map[string]string
}

func parseDockerfile(t *testing.T, name string) *dockerfile {
	t.Helper()
	res, err := parser.Parse(bytes.NewReader(read(t, filepath.Join(repoRoot, name))))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, w := range res.Warnings {
		t.Errorf("%s: parser warning: %s", name, w.Short)
	}
	var lints []string
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		lints = append(lints, fmt.Sprintf("%s (%s) at %v", msg, rule, loc))
	}})
	stages, meta, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, l := range lints {
		t.Errorf("%s: lint: %s", name, l)
	}
	d := &dockerfile{stages: stages, args: map[string]string{}}
	for _, a := range meta {
		for _, kv := range a.Args {
			if kv.Value != nil {
				d.args[kv.Key] = *kv.Value
			}
		}
	}
	return d
}

func (d *dockerfile) stage(t *testing.T, name string) *instructions.Stage {
	t.Helper()
	for i := range d.stages {
		if d.stages[i].Name == name {
			return &d.stages[i]
		}
	}
	t.Fatalf("no stage %q", name)
	return nil
}

// stageArgs returns the ARG defaults declared in a stage, global ones
// included when the stage redeclares them without a value.
func (d *dockerfile) stageArgs(s *instructions.Stage) map[string]string {
	out := map[string]string{}
	for _, c := range s.Commands {
		if a, ok := c.(*instructions.ArgCommand); ok {
			for _, kv := range a.Args {
				if kv.Value != nil {
					out[kv.Key] = *kv.Value
				} else if v, ok := d.args[kv.Key]; ok {
					out[kv.Key] = v
				}
			}
		}
	}
	return out
}

func (d *dockerfile) expand(s string) string {
	return os.Expand(s, func(k string) string { return d.args[k] })
}

func commands[C any](s *instructions.Stage) []C {
	var out []C
	for _, c := range s.Commands {
		if v, ok := c.(C); ok {
			out = append(out, v)
		}
	}
	return out
}

// runText joins a stage's RUN commands into one text to search.
func runText(s *instructions.Stage) string {
	var b strings.Builder
	for _, r := range commands[*instructions.RunCommand](s) {
		b.WriteString(strings.Join(r.CmdLine, " "))
		b.WriteByte('\n')
	}
	return b.String()
}

// envOf returns a stage's ENV values.
func envOf(s *instructions.Stage) map[string]string {
	out := map[string]string{}
	for _, e := range commands[*instructions.EnvCommand](s) {
		for _, kv := range e.Env {
			out[kv.Key] = kv.Value
		}
	}
	return out
}

// pinnedORT is what scripts/fetch-onnxruntime.sh pins.
type pinnedORT struct {
	version string
	sha256  map[string]string // by npm arch: x64, arm64
	member  string            // path inside the npm package, with $arch
}

func loadPinnedORT(t *testing.T) pinnedORT {
	t.Helper()
	src := string(read(t, filepath.Join(repoRoot, "scripts", "fetch-onnxruntime.sh")))
	p := pinnedORT{sha256: map[string]string{}}
	if m := regexp.MustCompile(`(?m)^ORT_VERSION=(\S+)$`).FindStringSubmatch(src); m != nil {
		p.version = m[1]
	}
	for _, m := range regexp.MustCompile(`\[(x64|arm64)\]=([0-9a-f]{64})`).FindAllStringSubmatch(src, -1) {
		p.sha256[m[1]] = m[2]
	}
	if m := regexp.MustCompile(`"(package/bin/napi-v6/linux/\$arch/libonnxruntime\.so\.1)"`).FindStringSubmatch(src); m != nil {
		p.member = m[1]
	}
	if p.version == "" || len(p.sha256) != 2 || p.member == "" {
		t.Fatalf("scripts/fetch-onnxruntime.sh: could not read the pins (version %q, sha256 %v, member %q)", p.version, p.sha256, p.member)
	}
	return p
}

// dockerUser returns the numeric UID of the image's final USER.
func dockerUser(t *testing.T, name string) int64 {
	t.Helper()
	d := parseDockerfile(t, name)
	users := commands[*instructions.UserCommand](&d.stages[len(d.stages)-1])
	if len(users) == 0 {
		t.Fatalf("%s: the final stage has no USER; it would run as root", name)
	}
	u, _, _ := strings.Cut(users[len(users)-1].User, ":")
	uid, err := strconv.ParseInt(u, 10, 64)
	if err != nil {
		t.Fatalf("%s: USER %q is not numeric; Kubernetes cannot check runAsNonRoot against a name", name, u)
	}
	return uid
}

func TestDockerfiles(t *testing.T) {
	f := loadServerFacts(t)
	ort := loadPinnedORT(t)
	goMod := string(read(t, filepath.Join(repoRoot, "go.mod")))
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(goMod)
	if goLine == nil {
		t.Fatal("go.mod has no go line")
	}
	for _, name := range []string{"Dockerfile", "Dockerfile.gpu"} {
		t.Run(name, func(t *testing.T) {
			d := parseDockerfile(t, name)
			var stageNames []string
			for _, s := range d.stages {
				stageNames = append(stageNames, s.Name)
			}
			if want := []string{"lib", "build", "runtime"}; !slices.Equal(stageNames, want) {
				t.Fatalf("stages %v, want %v", stageNames, want)
			}
			if d.args["ORT_VERSION"] != ort.version {
				t.Errorf("ORT_VERSION %q, scripts/fetch-onnxruntime.sh pins %q", d.args["ORT_VERSION"], ort.version)
			}

			build := d.stage(t, "build")
			goVersion := d.args["GO_VERSION"]
			if version.Compare("go"+goVersion, "go"+goLine[1]) < 0 {
				t.Errorf("GO_VERSION %s is older than go.mod's go %s", goVersion, goLine[1])
			}
			if base := d.expand(build.BaseName); base != "docker.io/library/golang:"+goVersion+"-bookworm" {
				t.Errorf("build stage base %q, want docker.io/library/golang:%s-bookworm", base, goVersion)
			}
			run := runText(build)
			for _, want := range []string{"CGO_ENABLED=1", "go build", "-trimpath", `-ldflags="-s -w"`, "./cmd/serve"} {
				if !strings.Contains(run, want) {
					t.Errorf("build stage RUN lacks %q:\n%s", want, run)
				}
			}

			rt := d.stage(t, "runtime")
			checkRuntimeStage(t, f, rt)
			switch name {
			case "Dockerfile":
				checkCPULib(t, d, ort)
				if base := d.expand(rt.BaseName); base != "docker.io/library/debian:bookworm-slim" {
					t.Errorf("runtime base %q: use the build stage's Debian release so the binary finds its glibc", base)
				}
			case "Dockerfile.gpu":
				checkGPULib(t, d)
			}
		})
	}
}

// checkRuntimeStage checks what every image promises: ports, health check,
// stop signal, user, entrypoint and the library location.
func checkRuntimeStage(t *testing.T, f serverFacts, rt *instructions.Stage) {
	t.Helper()
	var exposed []string
	for _, e := range commands[*instructions.ExposeCommand](rt) {
		exposed = append(exposed, e.Ports...)
	}
	want := []string{fmt.Sprint(f.httpPort), fmt.Sprint(f.grpcPort), fmt.Sprint(f.metricsPort)}
	if !slices.Equal(exposed, want) {
		t.Errorf("EXPOSE %v, want %v", exposed, want)
	}

	hc := commands[*instructions.HealthCheckCommand](rt)
	if len(hc) != 1 || hc[0].Health == nil {
		t.Fatalf("want one HEALTHCHECK, got %d", len(hc))
	}
	test := hc[0].Health.Test
	url := fmt.Sprintf("http://127.0.0.1:%d%s", f.httpPort, readyPath)
	if len(test) < 2 || test[0] != "CMD" || !slices.Contains(test, url) {
		t.Errorf("HEALTHCHECK %q: want an exec-form CMD calling %s", test, url)
	}
	failFlag := func(a string) bool {
		return a == "--fail" || (strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.Contains(a, "f"))
	}
	if len(test) > 1 && test[1] == "curl" && !slices.ContainsFunc(test, failFlag) {
		t.Errorf("HEALTHCHECK %q: curl without --fail reports a 503 as healthy", test)
	}
	if len(test) > 1 {
		installed := regexp.MustCompile(`apt-get install[^&;]*\s` + regexp.QuoteMeta(test[1]) + `(\s|$)`)
		if !installed.MatchString(runText(rt)) {
			t.Errorf("HEALTHCHECK runs %s, which no apt-get install of the runtime stage installs", test[1])
		}
	}

	sig := commands[*instructions.StopSignalCommand](rt)
	if len(sig) != 1 || sig[0].Signal != "SIGTERM" {
		t.Errorf("STOPSIGNAL %v, want SIGTERM", sig)
	}

	users := commands[*instructions.UserCommand](rt)
	if len(users) == 0 {
		t.Fatal("no USER: the image would run as root")
	}
	uid, _, _ := strings.Cut(users[len(users)-1].User, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric non-root UID", users[len(users)-1].User)
	}

	eps := commands[*instructions.EntrypointCommand](rt)
	if len(eps) != 1 || eps[0].PrependShell {
		t.Fatalf("want one exec-form ENTRYPOINT, got %d", len(eps))
	}
	ep := eps[0].CmdLine
	flags := checkServerArgs(t, f, ep[1:])
	if flags["model-repository"] != imageModelDir {
		t.Errorf("ENTRYPOINT %q: want --model-repository %s", ep, imageModelDir)
	}
	if flags["log-format"] != "json" {
		t.Errorf("ENTRYPOINT %q: want --log-format json", ep)
	}
	var binary bool
	for _, c := range commands[*instructions.CopyCommand](rt) {
		binary = binary || (c.From == "build" && c.DestPath == ep[0])
	}
	if !binary {
		t.Errorf("ENTRYPOINT runs %s, which no COPY --from=build puts there", ep[0])
	}

	lib := envOf(rt)["ONNXRUNTIME_LIB"]
	var copied bool
	for _, c := range commands[*instructions.CopyCommand](rt) {
		if c.From != "lib" {
			continue
		}
		dest := c.DestPath
		copied = copied || dest == lib || (strings.HasSuffix(dest, "/") && filepath.Dir(lib)+"/" == dest)
	}
	if lib == "" || !copied {
		t.Errorf("ONNXRUNTIME_LIB=%q is not where a COPY --from=lib puts the library", lib)
	}
}

// checkCPULib checks that the CPU image fetches exactly what
// scripts/fetch-onnxruntime.sh fetches.
func checkCPULib(t *testing.T, d *dockerfile, ort pinnedORT) {
	t.Helper()
	lib := d.stage(t, "lib")
	args := d.stageArgs(lib)
	for arch, arg := range map[string]string{"x64": "ORT_SHA256_X64", "arm64": "ORT_SHA256_ARM64"} {
		if args[arg] != ort.sha256[arch] {
			t.Errorf("%s=%q, scripts/fetch-onnxruntime.sh pins %q", arg, args[arg], ort.sha256[arch])
		}
	}
	run := runText(lib)
	for _, want := range []string{
		`npm pack "onnxruntime-node@${ORT_VERSION}"`,
		ort.member,
		"amd64) arch=x64",
		"arm64) arch=arm64",
		"sha256sum -c",
	} {
		if !strings.Contains(run, want) {
			t.Errorf("lib stage RUN lacks %q:\n%s", want, run)
		}
	}
	// A failed fetch must show npm's reason in the build log.
	for _, hides := range []string{"--silent", "--quiet", ">/dev/null", "2>/dev/null"} {
		if strings.Contains(run, hides) {
			t.Errorf("lib stage RUN hides the library fetch's output with %q", hides)
		}
	}
}

// checkGPULib checks the GPU image's pins: an exact CUDA image tag with
// cuDNN, and a checksum for the ONNX Runtime archive.
func checkGPULib(t *testing.T, d *dockerfile) {
	t.Helper()
	rt := d.stage(t, "runtime")
	base := d.expand(rt.BaseName)
	if !regexp.MustCompile(`^docker\.io/nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu\d\d\.\d\d$`).MatchString(base) {
		t.Errorf("runtime base %q: want an exact docker.io/nvidia/cuda:12.x.y-cudnn-runtime-ubuntu tag (the archive is built for CUDA 12 and cuDNN 9)", base)
	}
	lib := d.stage(t, "lib")
	sum := d.stageArgs(lib)["ORT_GPU_SHA256"]
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(sum) {
		t.Errorf("ORT_GPU_SHA256 %q is not a sha256", sum)
	}
	run := runText(lib)
	for _, want := range []string{
		`onnxruntime-linux-x64-gpu_cuda12-${ORT_VERSION}`,
		`https://github.com/microsoft/onnxruntime/releases/download/v${ORT_VERSION}/`,
		"sha256sum -c",
		"libonnxruntime_providers_shared.so",
		"libonnxruntime_providers_cuda.so",
	} {
		if !strings.Contains(run, want) {
			t.Errorf("lib stage RUN lacks %q:\n%s", want, run)
		}
	}
	env := envOf(rt)
	if dir := filepath.Dir(env["ONNXRUNTIME_LIB"]); !slices.Contains(strings.Split(env["LD_LIBRARY_PATH"], ":"), dir) {
		t.Errorf("LD_LIBRARY_PATH %q does not include %s, the folder of ONNXRUNTIME_LIB", env["LD_LIBRARY_PATH"], dir)
	}
}

// TestDockerignore checks that the build context keeps every file the
// server's build needs and leaves out the local caches.
func TestDockerignore(t *testing.T) {
	patterns := dockerignorePatterns(t)
	cmd := exec.Command("go", "list", "-e", "-deps", "-json", "./cmd/serve")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	abs, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	needed := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			Dir                                                   string
			Module                                                *struct{ Main bool }
			GoFiles, CgoFiles, CFiles, HFiles, SFiles, EmbedFiles []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		rel, err := filepath.Rel(abs, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, files := range [][]string{p.GoFiles, p.CgoFiles, p.CFiles, p.HFiles, p.SFiles, p.EmbedFiles} {
			for _, f := range files {
				needed = append(needed, filepath.ToSlash(filepath.Join(rel, f)))
			}
		}
	}
	if len(needed) < 10 {
		t.Fatalf("go list found only %d files for ./cmd/serve", len(needed))
	}
	for _, f := range needed {
		if ignored(patterns, f) {
			t.Errorf(".dockerignore leaves out %s, which the build needs", f)
		}
	}
	for _, f := range []string{".git/HEAD", ".cache/onnxruntime/1.30.0/linux-x64/libonnxruntime.so.1", "bin/onnxserve", "models/simple/1/model.onnx"} {
		if !ignored(patterns, f) {
			t.Errorf(".dockerignore sends %s to the build", f)
		}
	}
}

func dockerignorePatterns(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(string(read(t, filepath.Join(repoRoot, ".dockerignore"))), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.Contains(line, "**") {
			t.Fatalf(".dockerignore pattern %q: this test's matcher does not handle **", line)
		}
		out = append(out, line)
	}
	return out
}

// ignored applies .dockerignore patterns as Docker does for patterns
// without "**": each is matched against the path and against each of its
// parent folders, relative to the context root, and the last matching
// pattern decides ("!" re-includes).
func ignored(patterns []string, path string) bool {
	var out bool
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = filepath.Clean(strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/"))
		parts := strings.Split(path, "/")
		for i := 1; i <= len(parts); i++ {
			if ok, _ := filepath.Match(p, strings.Join(parts[:i], "/")); ok {
				out = !neg
				break
			}
		}
	}
	return out
}

func TestIgnored(t *testing.T) {
	pats := []string{"bin", "*.test", "docs", "!docs/keep.md"}
	tests := []struct {
		path string
		want bool
	}{
		{"bin/x", true},
		{"cmd/bin/x", false},
		{"a.test", true},
		{"cmd/a.test", false},
		{"docs/a.md", true},
		{"docs/keep.md", false},
		{"go.mod", false},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			if got := ignored(pats, tc.path); got != tc.want {
				t.Errorf("ignored(%q) = %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// The guide.

// TestGuide checks that deploy/README.md names every manifest and gives the
// commands that build the images the manifests run.
func TestGuide(t *testing.T) {
	text := string(read(t, guide))
	m := loadKubernetes(t)
	for _, file := range m.files {
		if !strings.Contains(text, file) {
			t.Errorf("deploy/README.md does not mention %s", file)
		}
	}
	for _, file := range []string{"servingruntime.yaml", "inferenceservice.yaml", "Dockerfile.gpu"} {
		if !strings.Contains(text, file) {
			t.Errorf("deploy/README.md does not mention %s", file)
		}
	}
	tag := serverImage + ":" + serverVersion(t)
	for _, cmd := range []string{
		"docker build -t " + tag + " .",
		"docker build -f Dockerfile.gpu -t " + tag + "-gpu .",
		"docker run --rm --gpus all -v \"$PWD/models:/models:ro\" -p 8000-8002:8000-8002 " + tag + "-gpu",
		"kubectl apply -n onnxserve -k deploy/kubernetes",
		"instances:\n  provider: cuda\n  device_id: 0",
		"CUDA execution provider is not available in",
		"canaryTrafficPercent",
		"traffic.split",
	} {
		if !strings.Contains(text, cmd) {
			t.Errorf("deploy/README.md lacks %q", cmd)
		}
	}
}

// ---------------------------------------------------------------------------
// Pod Security and images.

// checkRestricted applies the Pod Security Standards' "restricted" profile
// (https://kubernetes.io/docs/concepts/security/pod-security-standards/),
// as the PodSecurity admission controller at v1.30+ does, to a pod spec.
func checkRestricted(t *testing.T, spec *corev1.PodSpec) {
	t.Helper()
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Error("restricted: host namespaces are forbidden")
	}
	allowedVolumes := func(v corev1.Volume) bool {
		return v.ConfigMap != nil || v.CSI != nil || v.DownwardAPI != nil || v.EmptyDir != nil || v.Ephemeral != nil ||
			v.PersistentVolumeClaim != nil || v.Projected != nil || v.Secret != nil
	}
	for _, v := range spec.Volumes {
		if !allowedVolumes(v) {
			t.Errorf("restricted: volume %q is of a forbidden type", v.Name)
		}
	}
	pod := spec.SecurityContext
	if pod == nil {
		pod = &corev1.PodSecurityContext{}
	}
	if pod.RunAsUser != nil && *pod.RunAsUser == 0 {
		t.Error("restricted: pod runAsUser 0")
	}
	if pod.SeccompProfile != nil && !seccompOK(pod.SeccompProfile) {
		t.Errorf("restricted: pod seccompProfile %v", pod.SeccompProfile.Type)
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			sc = &corev1.SecurityContext{}
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("restricted: container %s is privileged", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("restricted: container %s must set allowPrivilegeEscalation: false", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("restricted: container %s must drop ALL capabilities", c.Name)
		} else if slices.ContainsFunc(sc.Capabilities.Add, func(c corev1.Capability) bool { return c != "NET_BIND_SERVICE" }) {
			t.Errorf("restricted: container %s adds capabilities %v", c.Name, sc.Capabilities.Add)
		}
		nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && pod.RunAsNonRoot != nil && *pod.RunAsNonRoot)
		if !nonRoot {
			t.Errorf("restricted: container %s must run with runAsNonRoot: true (pod or container)", c.Name)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			t.Errorf("restricted: container %s runAsUser 0", c.Name)
		}
		switch {
		case sc.SeccompProfile != nil:
			if !seccompOK(sc.SeccompProfile) {
				t.Errorf("restricted: container %s seccompProfile %v", c.Name, sc.SeccompProfile.Type)
			}
		case pod.SeccompProfile == nil:
			t.Errorf("restricted: container %s has no seccompProfile (RuntimeDefault or Localhost), nor has the pod", c.Name)
		}
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				t.Errorf("restricted: container %s uses hostPort %d", c.Name, p.HostPort)
			}
		}
		checkImage(t, c.Image)
	}
}

func seccompOK(p *corev1.SeccompProfile) bool {
	return p.Type == corev1.SeccompProfileTypeRuntimeDefault || p.Type == corev1.SeccompProfileTypeLocalhost
}

// qualifiedImageRe is an image reference with a registry host (a dot, a
// port or localhost in its first component), a path, and a tag or digest:
// CRI-O's strict short-name mode refuses anything else.
var qualifiedImageRe = regexp.MustCompile(`^(localhost|[a-z0-9-]+(\.[a-z0-9-]+)+)(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]+)?(@sha256:[0-9a-f]{64})?$`)

func checkImage(t *testing.T, image string) {
	t.Helper()
	if !qualifiedImage(image) {
		t.Errorf("image %q: want a fully qualified reference (registry/path:tag or @sha256 digest)", image)
	}
}

// qualifiedImage reports whether image names its registry and a tag or
// digest.
func qualifiedImage(image string) bool {
	return qualifiedImageRe.MatchString(image) &&
		(strings.Contains(image, "@sha256:") || strings.Contains(image[strings.LastIndex(image, "/"):], ":"))
}

func TestQualifiedImage(t *testing.T) {
	for _, c := range []struct {
		image string
		ok    bool
	}{
		{"ghcr.io/onnxserve/onnxserve:0.1.0", true},
		{"docker.io/library/busybox:1.37", true},
		{"registry.example.com:5000/onnxserve@sha256:" + strings.Repeat("ab", 32), true},
		{"localhost/onnxserve:dev", true},
		{"onnxserve:0.1.0", false},
		{"rclone/rclone:1.74.2", false},
		{"docker.io/library/busybox", false},
	} {
		if got := qualifiedImage(c.image); got != c.ok {
			t.Errorf("qualifiedImage(%q) = %v, want %v", c.image, got, c.ok)
		}
	}
}

func TestKubernetesPodSecurity(t *testing.T) {
	m := loadKubernetes(t)
	for key, d := range m.deployments {
		t.Run(key, func(t *testing.T) { checkRestricted(t, &d.Spec.Template.Spec) })
	}
	for key, p := range m.pods {
		t.Run(key, func(t *testing.T) { checkRestricted(t, &p.Spec) })
	}
}

func TestKubernetesNetworkPolicy(t *testing.T) {
	f := loadServerFacts(t)
	m := loadKubernetes(t)
	_, np := one(t, "NetworkPolicy", m.netpols)
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("policyTypes %v lack Ingress", np.Spec.PolicyTypes)
	}
	for _, d := range m.deployments {
		selects(t, "NetworkPolicy", &np.Spec.PodSelector, podLabels(t, d))
		c := container(t, &d.Spec.Template.Spec, serverContain)
		open := map[int32]bool{}    // reachable from anywhere
		guarded := map[int32]bool{} // reachable from named peers only
		for _, rule := range np.Spec.Ingress {
			if len(rule.Ports) == 0 {
				t.Errorf("an ingress rule without ports opens every port: %+v", rule)
			}
			for _, p := range rule.Ports {
				if p.Port == nil {
					t.Errorf("an ingress port without a number opens every port: %+v", p)
					continue
				}
				port := resolvePort(t, c, *p.Port)
				if len(rule.From) == 0 {
					open[port] = true
					continue
				}
				for _, peer := range rule.From {
					if peer.IPBlock != nil || (peer.PodSelector == nil && peer.NamespaceSelector == nil) ||
						(peer.NamespaceSelector != nil && len(peer.NamespaceSelector.MatchLabels)+len(peer.NamespaceSelector.MatchExpressions) == 0) {
						t.Errorf("port %d is open to a broad peer %+v", port, peer)
					}
				}
				guarded[port] = true
			}
		}
		if !open[f.httpPort] || !open[f.grpcPort] {
			t.Errorf("HTTP %d and gRPC %d must stay reachable; open: %v", f.httpPort, f.grpcPort, open)
		}
		if open[f.metricsPort] || !guarded[f.metricsPort] {
			t.Errorf("metrics port %d must be reachable from the named Prometheus peers only (open %v, guarded %v)", f.metricsPort, open, guarded)
		}
	}
}

// checkAdminToken checks that the server reads its admin token from a
// mounted Secret and never trusts loopback callers: in a pod, sidecars
// (Istio, Knative's queue-proxy) connect from loopback for every client.
func checkAdminToken(t *testing.T, spec *corev1.PodSpec, c *corev1.Container, flags map[string]string) {
	t.Helper()
	if v, ok := flags["admin-allow-loopback"]; ok && v != "false" {
		t.Errorf("--admin-allow-loopback in a manifest opens the management API to every client behind a sidecar")
	}
	file := flags["admin-token-file"]
	if file == "" {
		t.Error("no --admin-token-file: the management API stays closed, and the README's operations need it")
		return
	}
	for _, vm := range c.VolumeMounts {
		if !strings.HasPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			continue
		}
		if !vm.ReadOnly {
			t.Errorf("the admin token's mount %s is not read-only", vm.MountPath)
		}
		for _, v := range spec.Volumes {
			if v.Name != vm.Name {
				continue
			}
			if v.Secret == nil || v.Secret.SecretName == "" {
				t.Errorf("--admin-token-file %s is on volume %q, which is not a Secret", file, v.Name)
			} else if m := v.Secret.DefaultMode; m != nil && *m&0o007 != 0 {
				t.Errorf("the admin token Secret's mode %#o lets other users read it", *m)
			}
			return
		}
		t.Errorf("mount %s names no volume of the pod", vm.MountPath)
		return
	}
	t.Errorf("--admin-token-file %s is under no mount of container %s", file, c.Name)
}
