// Package deploy holds the deployment files (compose, Kubernetes,
// systemd); its tests decode them strictly and check that the
// configuration they mount passes `flowaudit run --check`. Docker and a
// Kubernetes cluster are not available where the tests run, so nothing
// here starts a container.
package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsyaml "sigs.k8s.io/yaml"
)

var stages = []string{"collect", "enrich", "detect", "sink", "archive"}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// buildFlowaudit builds the binary once per test binary.
func buildFlowaudit(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "flowaudit-deploy-test-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "flowaudit")
		if out, err := exec.Command("go", "build", "-o", binPath, "../cmd/flowaudit").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// checkConfig runs `flowaudit run --check` and `policy validate` on a
// deployment's configuration and policy, with the container paths
// (/etc/flowaudit, /var/lib/flowaudit) moved into a temporary folder.
func checkConfig(t *testing.T, bin, what string, config, policy []byte) {
	t.Helper()
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, policy, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := strings.ReplaceAll(string(config), "/etc/flowaudit/policy.yaml", policyPath)
	cfg = strings.ReplaceAll(cfg, "/var/lib/flowaudit", filepath.Join(dir, "state"))
	cfgPath := filepath.Join(dir, "flowaudit.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"run", "--check", "--config", cfgPath},
		{"policy", "validate", policyPath},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: flowaudit %s: %v\n%s", what, strings.Join(args, " "), err, out)
		}
	}
}

type composeFile struct {
	Name       string                    `yaml:"name"`
	XFlowaudit yaml.Node                 `yaml:"x-flowaudit"`
	Services   map[string]composeService `yaml:"services"`
	Volumes    map[string]struct{}       `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	Restart     string            `yaml:"restart"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Timeout  string   `yaml:"timeout"`
		Retries  int      `yaml:"retries"`
	} `yaml:"healthcheck"`
	Ulimits map[string]struct {
		Soft int `yaml:"soft"`
		Hard int `yaml:"hard"`
	} `yaml:"ulimits"`
}

func TestCompose(t *testing.T) {
	data, err := os.ReadFile("compose/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cf); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	if roles := cf.Services["kafka"].Environment["KAFKA_PROCESS_ROLES"]; roles != "broker,controller" {
		t.Errorf("kafka is not in KRaft mode (KAFKA_PROCESS_ROLES %q)", roles)
	}
	for _, name := range []string{"clickhouse", "grafana", "migrate"} {
		if _, ok := cf.Services[name]; !ok {
			t.Errorf("no %s service", name)
		}
	}
	for _, stage := range append(stages, "console") {
		s, ok := cf.Services[stage]
		if !ok {
			t.Errorf("no %s service", stage)
			continue
		}
		if s.Image != "flowaudit:latest" || len(s.Command) < 3 || s.Command[0] != stage || s.Command[2] != "/etc/flowaudit/flowaudit.yaml" {
			t.Errorf("%s: image %q command %v, want flowaudit:latest running %s --config /etc/flowaudit/flowaudit.yaml", stage, s.Image, s.Command, stage)
		}
		if s.DependsOn["migrate"].Condition != "service_completed_successfully" {
			t.Errorf("%s does not wait for the migration", stage)
		}
	}
	if !strings.Contains(strings.Join(cf.Services["collect"].Ports, " "), "2055:2055/udp") {
		t.Errorf("collect does not publish udp/2055: %v", cf.Services["collect"].Ports)
	}
	if !strings.Contains(strings.Join(cf.Services["archive"].Volumes, " "), "archive:/var/lib/flowaudit/archive") {
		t.Errorf("archive has no volume for archive.dir: %v", cf.Services["archive"].Volumes)
	}
	// Every bind mount names a file of the repository.
	for name, s := range cf.Services {
		for _, v := range s.Volumes {
			src := strings.SplitN(v, ":", 2)[0]
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join("compose", src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			}
		}
	}
	config, err := os.ReadFile("compose/flowaudit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	policy, err := os.ReadFile("policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checkConfig(t, buildFlowaudit(t), "compose", config, policy)
}

// decodeManifests decodes every document of the Kubernetes manifests
// strictly into its k8s.io/api type.
func decodeManifests(t *testing.T) map[string][]any {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	out := map[string][]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(data), "\n---\n") {
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := sigsyaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			gv, err := schema.ParseGroupVersion(meta.APIVersion)
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			var obj any
			switch gv.WithKind(meta.Kind).String() {
			case "apps/v1, Kind=Deployment":
				obj = &appsv1.Deployment{}
			case "/v1, Kind=Service":
				obj = &corev1.Service{}
			case "/v1, Kind=ConfigMap":
				obj = &corev1.ConfigMap{}
			case "/v1, Kind=Namespace":
				obj = &corev1.Namespace{}
			case "/v1, Kind=PersistentVolumeClaim":
				obj = &corev1.PersistentVolumeClaim{}
			case "batch/v1, Kind=Job":
				obj = &batchv1.Job{}
			default:
				t.Fatalf("%s document %d: unexpected %s %s", f, i, meta.APIVersion, meta.Kind)
			}
			if err := sigsyaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s document %d (%s): %v", f, i, meta.Kind, err)
			}
			out[meta.Kind] = append(out[meta.Kind], obj)
		}
	}
	return out
}

func TestKubernetes(t *testing.T) {
	objs := decodeManifests(t)
	deployments := map[string]*appsv1.Deployment{}
	for _, o := range objs["Deployment"] {
		d := o.(*appsv1.Deployment)
		deployments[d.Name] = d
	}
	for _, stage := range stages {
		d, ok := deployments["flowaudit-"+stage]
		if !ok {
			t.Errorf("no Deployment flowaudit-%s", stage)
			continue
		}
		c := d.Spec.Template.Spec.Containers[0]
		if len(c.Args) == 0 || c.Args[0] != stage {
			t.Errorf("%s runs %v", stage, c.Args)
		}
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" ||
			c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%s: probes are not /healthz and /readyz", stage)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("%s: no CPU or memory request", stage)
		}
		if d.Spec.Selector == nil || d.Spec.Selector.MatchLabels["app.kubernetes.io/component"] != stage ||
			d.Spec.Template.Labels["app.kubernetes.io/component"] != stage {
			t.Errorf("%s: selector does not match the pod labels", stage)
		}
	}
	udp := map[int32]bool{}
	for _, o := range objs["Service"] {
		s := o.(*corev1.Service)
		if s.Name != "flowaudit-collect" {
			continue
		}
		for _, p := range s.Spec.Ports {
			if p.Protocol == corev1.ProtocolUDP {
				udp[p.Port] = true
			}
		}
	}
	if !udp[2055] || !udp[6343] || !udp[5514] {
		t.Errorf("collector Service UDP ports = %v, want 2055, 6343, 5514", udp)
	}
	if len(objs["ConfigMap"]) != 1 {
		t.Fatalf("%d ConfigMaps, want 1", len(objs["ConfigMap"]))
	}
	cm := objs["ConfigMap"][0].(*corev1.ConfigMap)
	if cm.Data["flowaudit.yaml"] == "" || cm.Data["policy.yaml"] == "" {
		t.Fatalf("ConfigMap keys %v, want flowaudit.yaml and policy.yaml", cm.Data)
	}
	checkConfig(t, buildFlowaudit(t), "kubernetes ConfigMap", []byte(cm.Data["flowaudit.yaml"]), []byte(cm.Data["policy.yaml"]))
}

// TestSystemdUnit runs systemd-analyze verify on the unit (with ExecStart
// pointing at a freshly built binary), when systemd-analyze is installed.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	bin := buildFlowaudit(t)
	unit, err := os.ReadFile("systemd/flowaudit@.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "flowaudit@.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/flowaudit"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", filepath.Join(dir, "flowaudit@run.service")).CombinedOutput()
	var ours []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "flowaudit@") {
			ours = append(ours, line)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(ours, "\n"))
	}
}
