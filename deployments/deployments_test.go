package deployments

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// ---- Kubernetes ----

const kubeDir = "kubernetes"

// kubeObject is one document of a manifest file, decoded into its
// k8s.io/api type.
type kubeObject struct {
	where string // file#index, for messages
	kind  string
	obj   metav1.Object
}

// newKubeObject returns a pointer to the k8s.io/api type of apiVersion and
// kind, or nil for a kind these manifests are not expected to hold.
func newKubeObject(apiVersion, kind string) metav1.Object {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	}
	return nil
}

// decodeStrict decodes JSON into v, failing on a field v's type does not
// have (a misspelt or misplaced key) and on trailing data.
func decodeStrict(j []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the object")
	}
	return nil
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocuments splits a multi-document YAML file, dropping documents
// that hold only comments and blank lines.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range docSeparator.Split(string(data), -1) {
		empty := true
		for _, line := range strings.Split(d, "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// decodeManifests decodes every document of the named files strictly
// into its k8s.io/api type.
func decodeManifests(files []string) ([]kubeObject, error) {
	var objs []kubeObject
	var errs []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for i, doc := range splitDocuments(data) {
			where := fmt.Sprintf("%s#%d", f, i)
			j, err := yaml.YAMLToJSONStrict(doc)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				continue
			}
			var tm metav1.TypeMeta
			if err := json.Unmarshal(j, &tm); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				continue
			}
			obj := newKubeObject(tm.APIVersion, tm.Kind)
			if obj == nil {
				errs = append(errs, fmt.Errorf("%s: unexpected kind %q (apiVersion %q)", where, tm.Kind, tm.APIVersion))
				continue
			}
			if err := decodeStrict(j, obj); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s %q: %w", where, tm.Kind, obj.GetName(), err))
				continue
			}
			objs = append(objs, kubeObject{where: where, kind: tm.Kind, obj: obj})
		}
	}
	return objs, errors.Join(errs...)
}

// manifestFiles lists the YAML files of kubernetes/ other than the
// kustomization.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(kubeDir, pattern))
		require.NoError(t, err)
		files = append(files, m...)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return filepath.Base(f) == "kustomization.yaml" })
	sort.Strings(files)
	require.NotEmpty(t, files, "no manifests in %s", kubeDir)
	return files
}

func loadManifests(t *testing.T) []kubeObject {
	t.Helper()
	objs, err := decodeManifests(manifestFiles(t))
	require.NoError(t, err)
	return objs
}

func TestKubernetesDecodeStrict(t *testing.T) {
	objs := loadManifests(t)
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.kind]++
	}
	for _, kind := range []string{"Namespace", "ConfigMap", "Secret", "ServiceAccount", "Deployment", "Service", "PodDisruptionBudget"} {
		assert.NotZero(t, kinds[kind], "the manifests have no %s", kind)
	}
}

// The strict decoder itself: a misplaced field, an unknown kind and a
// duplicate key are errors.
func TestKubernetesDecoderRejects(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{
			name: "unknown field",
			doc:  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\nreplicas: 2\n",
			want: `unknown field "replicas"`,
		},
		{
			name: "misplaced field",
			doc:  "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers:\n        - name: c\n          image: i\n          probe: {}\n",
			want: `unknown field "probe"`,
		},
		{
			name: "unknown kind",
			doc:  "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\n",
			want: `unexpected kind "Job"`,
		},
		{
			name: "duplicate key",
			doc:  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n",
			want: `already set`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "m.yaml")
			require.NoError(t, os.WriteFile(f, []byte(tt.doc), 0o644))
			_, err := decodeManifests([]string{f})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestKustomization(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(kubeDir, "kustomization.yaml"))
	require.NoError(t, err)
	j, err := yaml.YAMLToJSONStrict(data)
	require.NoError(t, err)
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Namespace  string   `json:"namespace"`
		Resources  []string `json:"resources"`
		Images     []struct {
			Name    string `json:"name"`
			NewName string `json:"newName"`
			NewTag  string `json:"newTag"`
		} `json:"images"`
	}
	require.NoError(t, decodeStrict(j, &k))
	assert.Equal(t, "kustomize.config.k8s.io/v1beta1", k.APIVersion)
	assert.Equal(t, "Kustomization", k.Kind)
	assert.Equal(t, "sluice", k.Namespace)
	for _, r := range k.Resources {
		_, err := os.Stat(filepath.Join(kubeDir, r))
		assert.NoError(t, err, "kustomization resource %s", r)
	}
	// Every manifest file is applied.
	for _, f := range manifestFiles(t) {
		assert.Contains(t, k.Resources, filepath.Base(f), "%s is not in kustomization.yaml's resources", f)
	}
	// The images override names the workers' image.
	objs := loadManifests(t)
	for _, im := range k.Images {
		used := false
		for _, d := range ofKind[*appsv1.Deployment](objs) {
			for _, c := range d.Spec.Template.Spec.Containers {
				used = used || c.Image == im.Name || strings.HasPrefix(c.Image, im.Name+":")
			}
		}
		assert.True(t, used, "kustomization image %q is used by no container", im.Name)
	}
}

func ofKind[T metav1.Object](objs []kubeObject) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// argValue returns the value of --name in args ("--name value" or
// "--name=value").
func argValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// containerPort resolves a probe's or service's port (a number or a name)
// to a port the container declares.
func containerPort(c corev1.Container, p intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && p.StrVal == cp.Name) || (p.Type == intstr.Int && p.IntVal == cp.ContainerPort) {
			return cp, true
		}
	}
	return corev1.ContainerPort{}, false
}

func TestKubernetesWorker(t *testing.T) {
	objs := loadManifests(t)
	configMaps := map[string]*corev1.ConfigMap{}
	for _, cm := range ofKind[*corev1.ConfigMap](objs) {
		configMaps[cm.Name] = cm
	}
	secrets := map[string]*corev1.Secret{}
	for _, s := range ofKind[*corev1.Secret](objs) {
		secrets[s.Name] = s
	}
	accounts := map[string]bool{}
	for _, sa := range ofKind[*corev1.ServiceAccount](objs) {
		accounts[sa.Name] = true
	}
	namespaces := map[string]bool{}
	for _, ns := range ofKind[*corev1.Namespace](objs) {
		namespaces[ns.Name] = true
	}
	assert.True(t, namespaces["sluice"], "no Namespace sluice")
	for _, o := range objs {
		if o.kind != "Namespace" {
			assert.Equal(t, "sluice", o.obj.GetNamespace(), "%s: %s %s", o.where, o.kind, o.obj.GetName())
		}
	}

	deployments := ofKind[*appsv1.Deployment](objs)
	require.Len(t, deployments, 1)
	d := deployments[0]
	spec := d.Spec.Template.Spec

	// Replicas and a rolling update that never lowers capacity.
	require.NotNil(t, d.Spec.Replicas)
	assert.GreaterOrEqual(t, *d.Spec.Replicas, int32(2), "replicas")
	assert.Equal(t, appsv1.RollingUpdateDeploymentStrategyType, d.Spec.Strategy.Type)
	if ru := d.Spec.Strategy.RollingUpdate; assert.NotNil(t, ru, "rollingUpdate") {
		assert.Equal(t, intstr.FromInt32(0), *ru.MaxUnavailable, "maxUnavailable")
		assert.Equal(t, intstr.FromInt32(1), *ru.MaxSurge, "maxSurge")
	}
	// Time for connectors to commit and return on SIGTERM.
	if assert.NotNil(t, spec.TerminationGracePeriodSeconds) {
		assert.GreaterOrEqual(t, *spec.TerminationGracePeriodSeconds, int64(60), "terminationGracePeriodSeconds")
	}

	// The selector selects the pods.
	require.NotNil(t, d.Spec.Selector)
	podLabels := labels.Set(d.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	require.NoError(t, err)
	assert.False(t, sel.Empty(), "empty Deployment selector")
	assert.True(t, sel.Matches(podLabels), "Deployment selector %s does not match the pod labels %v", sel, podLabels)

	assert.True(t, accounts[spec.ServiceAccountName], "serviceAccountName %q is not in the manifests", spec.ServiceAccountName)

	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	podNonRoot := spec.SecurityContext != nil && spec.SecurityContext.RunAsNonRoot != nil && *spec.SecurityContext.RunAsNonRoot

	require.NotEmpty(t, spec.Containers)
	var metricsPorts []corev1.ContainerPort
	var metricsContainer corev1.Container
	for _, c := range spec.Containers {
		// --metrics-addr HOST:PORT, on a port the container declares.
		addr, ok := argValue(append(slices.Clone(c.Command), c.Args...), "--metrics-addr")
		if !assert.True(t, ok, "container %s: no --metrics-addr in %q", c.Name, c.Args) {
			continue
		}
		_, port, err := net.SplitHostPort(addr)
		require.NoError(t, err, "container %s: --metrics-addr %q", c.Name, addr)
		n, err := strconv.Atoi(port)
		require.NoError(t, err)
		mp, ok := containerPort(c, intstr.FromInt(n))
		assert.True(t, ok, "container %s: --metrics-addr port %d is not a declared containerPort", c.Name, n)
		metricsPorts = append(metricsPorts, mp)
		metricsContainer = c

		// The table store is shared object storage.
		dataDir, ok := argValue(c.Args, "--data-dir")
		assert.True(t, ok, "container %s: no --data-dir", c.Name)

		// Probes: HTTP GET /healthz on the metrics port.
		probes := map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe}
		if c.StartupProbe != nil {
			probes["startup"] = c.StartupProbe
		}
		for kind, p := range probes {
			if !assert.NotNil(t, p, "container %s: no %s probe", c.Name, kind) {
				continue
			}
			if !assert.NotNil(t, p.HTTPGet, "container %s: %s probe is not an HTTP GET", c.Name, kind) {
				continue
			}
			assert.Equal(t, "/healthz", p.HTTPGet.Path, "container %s: %s probe path", c.Name, kind)
			pp, ok := containerPort(c, p.HTTPGet.Port)
			if assert.True(t, ok, "container %s: %s probe port %s is not a declared containerPort", c.Name, kind, p.HTTPGet.Port.String()) {
				assert.Equal(t, mp.ContainerPort, pp.ContainerPort, "container %s: %s probe is not on the --metrics-addr port", c.Name, kind)
			}
		}

		// Resources: requests and limits for CPU and memory, requests <= limits.
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := c.Resources.Requests[r]
			lim, okLim := c.Resources.Limits[r]
			assert.True(t, okReq, "container %s: no %s request", c.Name, r)
			assert.True(t, okLim, "container %s: no %s limit", c.Name, r)
			if okReq && okLim {
				assert.LessOrEqual(t, req.Cmp(lim), 0, "container %s: %s request %s above limit %s", c.Name, r, req.String(), lim.String())
			}
		}

		// Non-root, read-only root file system, a writable /tmp.
		sc := c.SecurityContext
		if assert.NotNil(t, sc, "container %s: no securityContext", c.Name) {
			assert.True(t, podNonRoot || (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot), "container %s: runAsNonRoot", c.Name)
			assert.True(t, sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, "container %s: readOnlyRootFilesystem", c.Name)
			assert.True(t, sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, "container %s: allowPrivilegeEscalation", c.Name)
		}
		tmp := false
		for _, m := range c.VolumeMounts {
			v, ok := volumes[m.Name]
			assert.True(t, ok, "container %s: volumeMount %s has no volume", c.Name, m.Name)
			if m.MountPath == "/tmp" && ok && v.EmptyDir != nil {
				tmp = true
			}
		}
		assert.True(t, tmp, "container %s: no emptyDir at /tmp", c.Name)

		// Environment: every reference resolves, and every $(VAR) in the
		// arguments is a variable of the container.
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil && (r.Optional == nil || !*r.Optional) {
				cm, ok := configMaps[r.Name]
				if assert.True(t, ok, "env %s: ConfigMap %q is not in the manifests", e.Name, r.Name) {
					_, ok := cm.Data[r.Key]
					assert.True(t, ok, "env %s: ConfigMap %s has no key %s", e.Name, r.Name, r.Key)
					if ok && e.Name == "DATA_DIR" {
						dataDir = cm.Data[r.Key]
					}
				}
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil && (r.Optional == nil || !*r.Optional) {
				s, ok := secrets[r.Name]
				if assert.True(t, ok, "env %s: Secret %q is not in the manifests", e.Name, r.Name) {
					_, inString := s.StringData[r.Key]
					_, inData := s.Data[r.Key]
					assert.True(t, inString || inData, "env %s: Secret %s has no key %s", e.Name, r.Name, r.Key)
				}
			}
		}
		for _, ef := range c.EnvFrom {
			if r := ef.ConfigMapRef; r != nil && (r.Optional == nil || !*r.Optional) {
				assert.Contains(t, configMaps, r.Name, "envFrom: ConfigMap %q is not in the manifests", r.Name)
			}
			if r := ef.SecretRef; r != nil && (r.Optional == nil || !*r.Optional) {
				assert.Contains(t, secrets, r.Name, "envFrom: Secret %q is not in the manifests", r.Name)
			}
		}
		for _, a := range c.Args {
			for _, m := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(a, -1) {
				_, ok := env[m[1]]
				assert.True(t, ok, "container %s: argument %q uses $(%s), which is not in env", c.Name, a, m[1])
			}
		}
		for _, name := range []string{"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
			_, ok := env[name]
			assert.True(t, ok, "container %s: no %s", c.Name, name)
		}
		assert.True(t, strings.HasPrefix(dataDir, "s3://"), "container %s: --data-dir %q is not s3://", c.Name, dataDir)
	}
	require.Len(t, metricsPorts, 1, "exactly one container serves --metrics-addr")

	// Prometheus scrape annotations name the metrics port.
	ann := d.Spec.Template.Annotations
	assert.Equal(t, "true", ann["prometheus.io/scrape"])
	assert.Equal(t, strconv.Itoa(int(metricsPorts[0].ContainerPort)), ann["prometheus.io/port"])
	assert.Equal(t, "/metrics", ann["prometheus.io/path"])

	// The metrics Service selects the pods and targets the metrics port.
	services := ofKind[*corev1.Service](objs)
	require.NotEmpty(t, services)
	for _, s := range services {
		assert.NotEmpty(t, s.Spec.Selector, "Service %s has no selector", s.Name)
		assert.True(t, labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels), "Service %s selector %v does not match the pod labels %v", s.Name, s.Spec.Selector, podLabels)
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port)
			}
			cp, ok := containerPort(metricsContainer, target)
			if assert.True(t, ok, "Service %s port %s: targetPort %s is not a declared containerPort", s.Name, p.Name, target.String()) {
				assert.Equal(t, metricsPorts[0].ContainerPort, cp.ContainerPort, "Service %s does not target the metrics port", s.Name)
			}
		}
	}

	// The PodDisruptionBudget selects the pods and leaves one running.
	pdbs := ofKind[*policyv1.PodDisruptionBudget](objs)
	require.Len(t, pdbs, 1)
	pdbSel, err := metav1.LabelSelectorAsSelector(pdbs[0].Spec.Selector)
	require.NoError(t, err)
	assert.False(t, pdbSel.Empty(), "empty PodDisruptionBudget selector")
	assert.True(t, pdbSel.Matches(podLabels), "PodDisruptionBudget selector %s does not match the pod labels %v", pdbSel, podLabels)
	if min := pdbs[0].Spec.MinAvailable; min != nil && min.Type == intstr.Int {
		assert.Less(t, min.IntVal, *d.Spec.Replicas, "minAvailable leaves no pod to evict")
	}

	// The ConfigMap points at the Temporal frontend.
	for _, cm := range configMaps {
		if addr, ok := cm.Data["TEMPORAL_ADDRESS"]; ok {
			_, _, err := net.SplitHostPort(addr)
			assert.NoError(t, err, "ConfigMap %s TEMPORAL_ADDRESS %q", cm.Name, addr)
		}
	}
}

// ---- docker compose ----

const composeFile = "compose.yaml"

type composeService struct {
	Image       string         `json:"image"`
	Build       any            `json:"build"`
	Command     any            `json:"command"`
	Entrypoint  any            `json:"entrypoint"`
	Environment any            `json:"environment"`
	DependsOn   any            `json:"depends_on"`
	Volumes     []any          `json:"volumes"`
	Healthcheck map[string]any `json:"healthcheck"`
	Profiles    []string       `json:"profiles"`
}

func loadCompose(t *testing.T) map[string]composeService {
	t.Helper()
	data, err := os.ReadFile(composeFile)
	require.NoError(t, err)
	j, err := yaml.YAMLToJSONStrict(data)
	require.NoError(t, err)
	var c struct {
		Services map[string]composeService `json:"services"`
	}
	require.NoError(t, json.Unmarshal(j, &c))
	require.NotEmpty(t, c.Services)
	return c.Services
}

// list turns a compose list-or-string field into a list (a string is
// split on blanks, as compose does for command).
func list(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, len(v))
		for i, x := range v {
			out[i] = fmt.Sprint(x)
		}
		return out
	}
	return nil
}

// environment turns a compose environment (a map or a list of NAME=VALUE)
// into a map.
func environment(v any) map[string]string {
	out := map[string]string{}
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			out[k] = fmt.Sprint(x)
		}
	case []any:
		for _, x := range v {
			k, val, _ := strings.Cut(fmt.Sprint(x), "=")
			out[k] = val
		}
	}
	return out
}

func dependencies(v any) []string {
	switch v := v.(type) {
	case []any:
		return list(v)
	case map[string]any:
		var out []string
		for k := range v {
			out = append(out, k)
		}
		return out
	}
	return nil
}

func TestComposeConfig(t *testing.T) {
	var cmd *exec.Cmd
	if _, err := exec.LookPath("docker-compose"); err == nil {
		cmd = exec.Command("docker-compose", "-f", composeFile, "config", "-q")
	} else if exec.Command("docker", "compose", "version").Run() == nil {
		cmd = exec.Command("docker", "compose", "-f", composeFile, "config", "-q")
	} else if os.Getenv("CI") == "true" {
		t.Fatal("docker-compose is not installed (apt-get install -y --no-install-recommends docker-compose)")
	} else {
		t.Skip("docker-compose is not installed (apt-get install -y --no-install-recommends docker-compose)")
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s:\n%s", cmd, out)
}

func TestCompose(t *testing.T) {
	services := loadCompose(t)

	for _, name := range []string{"temporal", "temporal-postgresql", "temporal-schema", "temporal-setup", "temporal-ui", "redpanda", "s3", "s3-bucket", "postgres", "prometheus", "grafana"} {
		assert.Contains(t, services, name, "service %s", name)
	}
	assert.True(t, strings.HasPrefix(services["temporal"].Image, "temporalio/server:") || strings.HasPrefix(services["temporal"].Image, "temporalio/auto-setup:"), "temporal image %q", services["temporal"].Image)
	assert.True(t, strings.HasPrefix(services["temporal-ui"].Image, "temporalio/ui:"), "temporal-ui image %q", services["temporal-ui"].Image)

	// Every dependency is a service; every bind-mounted file exists.
	for name, s := range services {
		for _, dep := range dependencies(s.DependsOn) {
			assert.Contains(t, services, dep, "service %s depends on %s", name, dep)
		}
		for _, v := range s.Volumes {
			src, _, ok := strings.Cut(fmt.Sprint(v), ":")
			if ok && (strings.HasPrefix(src, "./") || strings.HasPrefix(src, "../")) {
				_, err := os.Stat(src)
				assert.NoError(t, err, "service %s mounts %s", name, src)
			}
		}
	}

	// The search attributes are created by the setup script the one-shot runs.
	setup := services["temporal-setup"]
	script := ""
	for _, a := range append(list(setup.Entrypoint), list(setup.Command)...) {
		if strings.HasSuffix(a, ".sh") {
			script = filepath.Join("temporal", filepath.Base(a))
		}
	}
	if assert.NotEmpty(t, script, "temporal-setup runs no script") {
		data, err := os.ReadFile(script)
		require.NoError(t, err)
		// The commands, not the comments.
		var code []string
		for _, line := range strings.Split(string(data), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "#") {
				code = append(code, line)
			}
		}
		sh := strings.Join(code, "\n")
		assert.Contains(t, sh, "temporal operator search-attribute create")
		assert.Regexp(t, `\bSluicePipeline\b`, sh)
		assert.Regexp(t, `\bSluiceState\b`, sh)
		assert.Contains(t, sh, "--type Keyword")
	}

	// Workers: built from the Dockerfile, connected to Temporal, the table
	// store in the compose S3 service, metrics on.
	var workers []string
	for name, s := range services {
		args := list(s.Command)
		if _, ok := argValue(args, "--metrics-addr"); ok && len(s.Profiles) == 0 {
			workers = append(workers, name)
		}
	}
	sort.Strings(workers)
	require.GreaterOrEqual(t, len(workers), 2, "fewer than two worker services with --metrics-addr")
	scraped := prometheusTargets(t)
	for _, name := range workers {
		s := services[name]
		b, _ := s.Build.(map[string]any)
		assert.Equal(t, "deployments/Dockerfile", b["dockerfile"], "service %s build", name)
		env := environment(s.Environment)
		assert.Equal(t, "temporal:7233", env["TEMPORAL_ADDRESS"], "service %s TEMPORAL_ADDRESS", name)
		for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} {
			assert.NotEmpty(t, env[k], "service %s %s", name, k)
		}
		args := list(s.Command)
		dataDir, _ := argValue(args, "--data-dir")
		assert.True(t, strings.HasPrefix(dataDir, "s3://"), "service %s --data-dir %q", name, dataDir)
		endpoint, _ := argValue(args, "--s3-endpoint-url")
		host, _, err := net.SplitHostPort(strings.TrimPrefix(endpoint, "http://"))
		if assert.NoError(t, err, "service %s --s3-endpoint-url %q", name, endpoint) {
			assert.Contains(t, services, host, "service %s --s3-endpoint-url names no service", name)
		}
		addr, _ := argValue(args, "--metrics-addr")
		_, port, err := net.SplitHostPort(addr)
		require.NoError(t, err, "service %s --metrics-addr %q", name, addr)
		assert.NotEmpty(t, s.Healthcheck, "service %s has no healthcheck", name)
		assert.Contains(t, fmt.Sprint(s.Healthcheck["test"]), "/healthz", "service %s healthcheck", name)
		assert.Contains(t, fmt.Sprint(s.Healthcheck["test"]), "/"+port, "service %s healthcheck is not on the metrics port", name)
		assert.True(t, scraped[name+":"+port], "prometheus.yml does not scrape %s:%s", name, port)
		deps := dependencies(s.DependsOn)
		assert.Contains(t, deps, "temporal-setup", "service %s starts before the search attributes exist", name)
	}
}

// prometheusTargets returns the host:port targets of prometheus.yml,
// static and DNS-discovered.
func prometheusTargets(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("prometheus", "prometheus.yml"))
	require.NoError(t, err)
	var c struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `json:"names"`
				Port  int      `json:"port"`
			} `json:"dns_sd_configs"`
		} `json:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(data, &c))
	targets := map[string]bool{}
	for _, sc := range c.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets[tg] = true
			}
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				targets[net.JoinHostPort(n, strconv.Itoa(d.Port))] = true
			}
		}
	}
	return targets
}

// ---- Grafana ----

// exportedMetrics are the worker's per-connector metrics (labels pipeline,
// table, connector; package metrics). The dashboard may use these and the
// Temporal SDK's (prefix temporal_), and must show each of them.
var exportedMetrics = []string{
	"sluice_input_records_total",
	"sluice_input_bytes_total",
	"sluice_input_buffered_records",
	"sluice_input_parse_errors_total",
	"sluice_input_transport_errors_total",
	"sluice_input_end_of_input",
	"sluice_output_records_total",
	"sluice_output_bytes_total",
	"sluice_output_buffered_records",
	"sluice_output_encode_errors_total",
	"sluice_output_transport_errors_total",
	"sluice_output_lag_seconds",
	"sluice_output_end_of_input",
}

var (
	promStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping  = regexp.MustCompile(`(?i)\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promVariables = regexp.MustCompile(`\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*`)
	promIdent     = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promKeywords  = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
		"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true, "atan2": true}
)

// metricNames returns the metric names a PromQL expression selects:
// identifiers outside strings, label matchers, ranges and grouping lists
// that are neither functions nor keywords.
func metricNames(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRanges.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	s = promVariables.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		if loc[0] > 0 {
			if prev := s[loc[0]-1]; prev == '.' || prev >= '0' && prev <= '9' {
				continue // 1e3, 5m
			}
		}
		name := s[loc[0]:loc[1]]
		if promKeywords[strings.ToLower(name)] || strings.HasPrefix(strings.TrimLeft(s[loc[1]:], " \t\n"), "(") {
			continue // a keyword, a function or an aggregation
		}
		names = append(names, name)
	}
	return names
}

func TestMetricNames(t *testing.T) {
	tests := []struct {
		name string
		expr string
		want []string
	}{
		{"rate", `sum by (pipeline, table) (rate(sluice_input_records_total{pipeline=~"$pipeline"}[$__rate_interval]))`, []string{"sluice_input_records_total"}},
		{"quantile", `histogram_quantile(0.95, sum(rate(temporal_activity_execution_latency_seconds_bucket[5m])) by (le))`, []string{"temporal_activity_execution_latency_seconds_bucket"}},
		{"binary", `max by (a) (x_total) * on (a) (sum by (a) (y) == bool 0) offset 1h`, []string{"x_total", "y"}},
		{"query_result", `query_result(group by (connector) (foo{a="b"}) or bar)`, []string{"foo", "bar"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, metricNames(tt.expr))
		})
	}
}

// dashboardQueries returns every PromQL expression of the dashboard:
// panel targets (rows' nested panels too) and query variables.
func dashboardQueries(d map[string]any) (exprs []string, err error) {
	var walk func(panels []any)
	walk = func(panels []any) {
		for _, p := range panels {
			pm, _ := p.(map[string]any)
			for _, tg := range asList(pm["targets"]) {
				if e, ok := tg.(map[string]any)["expr"].(string); ok {
					exprs = append(exprs, e)
				}
			}
			walk(asList(pm["panels"]))
		}
	}
	walk(asList(d["panels"]))
	templating, _ := d["templating"].(map[string]any)
	for _, v := range asList(templating["list"]) {
		vm, _ := v.(map[string]any)
		if vm["type"] != "query" {
			continue
		}
		q := vm["query"]
		if m, ok := q.(map[string]any); ok {
			q = m["query"]
		}
		qs, _ := q.(string)
		// label_values(expr, label) and query_result(expr): the expression.
		if inner, ok := strings.CutPrefix(qs, "label_values("); ok {
			inner = strings.TrimSuffix(inner, ")")
			if i := strings.LastIndex(inner, ","); i >= 0 {
				inner = inner[:i]
			} else {
				inner = "" // label_values(label): no metric
			}
			qs = inner
		} else if inner, ok := strings.CutPrefix(qs, "query_result("); ok {
			qs = strings.TrimSuffix(inner, ")")
		}
		if qs != "" {
			exprs = append(exprs, qs)
		}
	}
	if len(exprs) == 0 {
		return nil, errors.New("the dashboard has no queries")
	}
	return exprs, nil
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("grafana", "sluice-dashboard.json"))
	require.NoError(t, err)
	var d map[string]any
	require.NoError(t, json.Unmarshal(data, &d), "the dashboard is not JSON")

	assert.NotEmpty(t, d["title"])
	assert.NotEmpty(t, d["uid"])
	if v, ok := d["schemaVersion"].(float64); assert.True(t, ok, "no schemaVersion") {
		assert.GreaterOrEqual(t, v, 36.0, "schemaVersion")
	}

	// Template variables: the data source, and pipeline, table, connector.
	vars := map[string]map[string]any{}
	templating, _ := d["templating"].(map[string]any)
	for _, v := range asList(templating["list"]) {
		vm, _ := v.(map[string]any)
		vars[fmt.Sprint(vm["name"])] = vm
	}
	if ds, ok := vars["datasource"]; assert.True(t, ok, "no datasource variable") {
		assert.Equal(t, "datasource", ds["type"])
		assert.Equal(t, "prometheus", ds["query"])
	}
	for _, name := range []string{"pipeline", "table", "connector"} {
		if v, ok := vars[name]; assert.True(t, ok, "no %s variable", name) {
			assert.Equal(t, "query", v["type"], "variable %s", name)
		}
	}

	exprs, err := dashboardQueries(d)
	require.NoError(t, err)
	used := map[string]bool{}
	selector := regexp.MustCompile(`(sluice_[a-z_]+)(\{[^}]*\})?`)
	for _, e := range exprs {
		for _, name := range metricNames(e) {
			used[name] = true
			assert.True(t, slices.Contains(exportedMetrics, name) || strings.HasPrefix(name, "temporal_"),
				"%q uses %s, which the worker does not export", e, name)
		}
		// A panel over connector metrics follows the variables.
		for _, m := range selector.FindAllStringSubmatch(e, -1) {
			// Variable queries (group by ...) filter by the variables before them only.
			if !slices.Contains(exportedMetrics, m[1]) || strings.HasPrefix(e, "group by") {
				continue
			}
			for _, v := range []string{"$pipeline", "$table", "$connector"} {
				assert.Contains(t, m[2], v, "%q: %s is not filtered by %s", e, m[1], v)
			}
		}
	}
	// Every connector metric has a panel.
	for _, m := range exportedMetrics {
		assert.True(t, used[m], "no panel shows %s", m)
	}
	temporal := 0
	for name := range used {
		if strings.HasPrefix(name, "temporal_") {
			temporal++
		}
	}
	assert.GreaterOrEqual(t, temporal, 4, "Temporal SDK metrics on the dashboard")

	// Panels query the data source variable.
	var walk func(panels []any)
	walk = func(panels []any) {
		for _, p := range panels {
			pm, _ := p.(map[string]any)
			if pm["type"] != "row" {
				ds, _ := pm["datasource"].(map[string]any)
				assert.Equal(t, "${datasource}", ds["uid"], "panel %q data source", pm["title"])
			}
			walk(asList(pm["panels"]))
		}
	}
	walk(asList(d["panels"]))
}

// ---- Dockerfile ----

// dockerStage is one stage of a Dockerfile: its FROM line and its
// instructions, continuation lines joined.
type dockerStage struct {
	from         string
	instructions []string
}

func dockerStages(data string) []dockerStage {
	var stages []dockerStage
	var cur string
	flush := func() {
		line := strings.TrimSpace(cur)
		cur = ""
		if line == "" {
			return
		}
		if strings.HasPrefix(strings.ToUpper(line), "FROM ") {
			stages = append(stages, dockerStage{from: line})
			return
		}
		if len(stages) > 0 {
			stages[len(stages)-1].instructions = append(stages[len(stages)-1].instructions, line)
		}
	}
	for _, line := range strings.Split(data, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur += strings.TrimSuffix(trimmed, `\`) + " "
			continue
		}
		cur += trimmed
		flush()
	}
	flush()
	return stages
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	stages := dockerStages(string(data))
	require.GreaterOrEqual(t, len(stages), 2, "not a multi-stage build")

	build := stages[0]
	assert.Regexp(t, `(?i)^FROM golang:1\.26\S* AS \S+$`, build.from)
	buildName := strings.Fields(build.from)[3]
	text := strings.Join(build.instructions, "\n")
	for _, want := range []struct{ out, pkg string }{{"/sluice-worker", "./worker"}, {"/sluice", "./starter"}} {
		re := regexp.MustCompile(`go build [^\n&;]*-o ` + regexp.QuoteMeta(want.out) + ` ` + regexp.QuoteMeta(want.pkg) + `\b`)
		assert.Regexp(t, re, text, "the build stage does not build %s as %s", want.pkg, want.out)
		// The package is a command of this repository.
		src, err := os.ReadFile(filepath.Join("..", want.pkg, "main.go"))
		if assert.NoError(t, err) {
			assert.Contains(t, string(src), "package main")
		}
	}
	assert.Regexp(t, `CGO_ENABLED=0`, text)
	assert.Regexp(t, `-trimpath`, text)
	assert.Regexp(t, `-ldflags "-s -w"`, text)

	final := stages[len(stages)-1]
	assert.NotContains(t, final.from, "golang", "the runtime stage is the Go toolchain image")
	ftext := strings.Join(final.instructions, "\n")
	assert.Contains(t, ftext, "COPY --from="+buildName+" /sluice-worker ")
	assert.Contains(t, ftext, "COPY --from="+buildName+" /sluice ")
	user := ""
	entrypoint := ""
	for _, in := range final.instructions {
		if u, ok := strings.CutPrefix(in, "USER "); ok {
			user = strings.TrimSpace(u)
		}
		if e, ok := strings.CutPrefix(in, "ENTRYPOINT "); ok {
			entrypoint = e
		}
	}
	assert.NotEmpty(t, user, "the runtime stage runs as root")
	assert.NotContains(t, []string{"root", "0", "0:0", "root:root"}, user, "the runtime stage runs as root")
	assert.Equal(t, `["/sluice-worker"]`, entrypoint)

	// The ignore file keeps what the build needs.
	ignore, err := os.ReadFile("Dockerfile.dockerignore")
	require.NoError(t, err)
	for _, line := range strings.Split(string(ignore), "\n") {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") || strings.HasPrefix(p, "!") {
			continue
		}
		for _, needed := range []string{"go.mod", "go.sum", "worker", "starter", "sluice.go"} {
			ok, err := filepath.Match(p, needed)
			require.NoError(t, err, "pattern %q", p)
			assert.False(t, ok, "Dockerfile.dockerignore excludes %s (%q)", needed, p)
		}
	}
}
