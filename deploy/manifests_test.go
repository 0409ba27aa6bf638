package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// manifests decodes every document of kubernetes/*.yaml strictly: unknown
// or duplicate fields and wrong types are errors, as with the API server's
// strict field validation.
func manifests(t *testing.T) []runtime.Object {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	strict := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: true, Strict: true})
	files, _ := filepath.Glob("kubernetes/*.yaml")
	if len(files) == 0 {
		t.Fatal("no manifests in kubernetes/")
	}
	var objs []runtime.Object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for i := 0; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			obj, gvk, err := strict.Decode(doc, nil, nil)
			if err != nil {
				t.Errorf("%s: document %d: %v", f, i, err)
				continue
			}
			t.Logf("%s: %s %s", f, gvk.Kind, obj.(interface{ GetName() string }).GetName())
			objs = append(objs, obj)
		}
	}
	return objs
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(append(out, l...), '\n')
		}
	}
	return out
}

// TestManifestsDecodeStrictly: the manifests are valid Kubernetes objects.
func TestManifestsDecodeStrictly(t *testing.T) {
	kinds := map[string]int{}
	for _, o := range manifests(t) {
		kinds[o.GetObjectKind().GroupVersionKind().Kind]++
	}
	if kinds["Deployment"] < 2 || kinds["ConfigMap"] < 1 || kinds["Service"] < 1 {
		t.Fatalf("kinds %v: want the app's and Redis's Deployments, the ConfigMap and Redis's Service", kinds)
	}
}

// TestManifestsHangTogether checks what strict decoding cannot: names are
// valid, selectors select their pods, probes and Services name declared
// ports, every ConfigMap referenced is in the manifests and every Secret is
// the documented one, every container has resource requests and a pinned
// image, and breakerbox's sidecar is wired as the README says.
func TestManifestsHangTogether(t *testing.T) {
	objs := manifests(t)
	configMaps := map[string]*corev1.ConfigMap{}
	var deployments []*appsv1.Deployment
	var services []*corev1.Service
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.ConfigMap:
			configMaps[o.Name] = o
		case *appsv1.Deployment:
			deployments = append(deployments, o)
		case *corev1.Service:
			services = append(services, o)
		}
		name := o.(interface{ GetName() string }).GetName()
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			t.Errorf("name %q: %s", name, msg)
		}
	}
	var sidecar *corev1.Container
	for _, d := range deployments {
		sel, err := metav1LabelSelector(d)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("deployment %s: selector %v does not select its pod template's labels %v (%v)", d.Name, d.Spec.Selector, d.Spec.Template.Labels, err)
		}
		pod := d.Spec.Template.Spec
		for _, v := range pod.Volumes {
			if v.ConfigMap != nil && configMaps[v.ConfigMap.Name] == nil {
				t.Errorf("deployment %s: volume %s: no ConfigMap %q in the manifests", d.Name, v.Name, v.ConfigMap.Name)
			}
		}
		all := append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...)
		for i, c := range all {
			where := d.Name + "/" + c.Name
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("%s: no cpu and memory requests", where)
			}
			if c.Image == "" || !strings.Contains(c.Image, ":") || strings.HasSuffix(c.Image, ":latest") {
				t.Errorf("%s: image %q: pin a version", where, c.Image)
			}
			for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
				if p == nil {
					continue
				}
				if h := p.HTTPGet; h != nil && !hasPort(c, h.Port) {
					t.Errorf("%s: probe on port %s, which the container does not declare", where, h.Port.String())
				}
				if s := p.TCPSocket; s != nil && !hasPort(c, s.Port) {
					t.Errorf("%s: probe on port %s, which the container does not declare", where, s.Port.String())
				}
			}
			for _, m := range c.VolumeMounts {
				if !hasVolume(pod, m.Name) {
					t.Errorf("%s: mounts volume %q, which the pod does not have", where, m.Name)
				}
			}
			for _, e := range c.Env {
				if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && r.SecretKeyRef.Name != "breakerbox-admin-token" {
					t.Errorf("%s: env %s from Secret %q: only breakerbox-admin-token is documented (kubectl create secret)", where, e.Name, r.SecretKeyRef.Name)
				}
			}
			if c.Name == "breakerbox" {
				sidecar = &all[i]
			}
		}
	}
	for _, s := range services {
		found := false
		for _, d := range deployments {
			if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				found = true
				for _, p := range s.Spec.Ports {
					if !podHasPort(d.Spec.Template.Spec, p.TargetPort) {
						t.Errorf("service %s: targetPort %s is no port of deployment %s", s.Name, p.TargetPort.String(), d.Name)
					}
				}
			}
		}
		if !found {
			t.Errorf("service %s: its selector %v selects no pod of the manifests", s.Name, s.Spec.Selector)
		}
	}

	if sidecar == nil {
		t.Fatal("no container named breakerbox")
	}
	if sidecar.LivenessProbe == nil || sidecar.LivenessProbe.HTTPGet == nil || sidecar.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("breakerbox: liveness probe must GET /healthz")
	}
	if sidecar.ReadinessProbe == nil || sidecar.ReadinessProbe.HTTPGet == nil || sidecar.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("breakerbox: readiness probe must GET /readyz")
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range sidecar.Env {
		env[e.Name] = e
	}
	if env["BREAKERBOX_LISTEN"].Value != "127.0.0.1:7070" {
		t.Errorf("breakerbox: BREAKERBOX_LISTEN %q: keep the proxy on the pod's loopback", env["BREAKERBOX_LISTEN"].Value)
	}
	if r := env["BREAKERBOX_ADMIN_TOKEN"].ValueFrom; r == nil || r.SecretKeyRef == nil {
		t.Error("breakerbox: BREAKERBOX_ADMIN_TOKEN must come from a Secret")
	}
	if sc := sidecar.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("breakerbox: run it as non-root on a read-only root file system")
	}
	cm := configMaps["breakerbox-config"]
	if cm == nil || !strings.Contains(cm.Data["breakerbox.yaml"], "state: redis://breakerbox-redis:6379/") {
		t.Error("ConfigMap breakerbox-config: its breakerbox.yaml must point state: at the breakerbox-redis Service")
	}
}

func metav1LabelSelector(d *appsv1.Deployment) (labels.Selector, error) {
	if d.Spec.Selector == nil {
		return nil, errors.New("no selector")
	}
	return labels.SelectorFromSet(d.Spec.Selector.MatchLabels), nil
}

func hasPort(c corev1.Container, p intstr.IntOrString) bool {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return true
		}
	}
	return false
}

func podHasPort(pod corev1.PodSpec, p intstr.IntOrString) bool {
	for _, c := range append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...) {
		if hasPort(c, p) {
			return true
		}
	}
	return false
}

func hasVolume(pod corev1.PodSpec, name string) bool {
	for _, v := range pod.Volumes {
		if v.Name == name {
			return true
		}
	}
	return false
}
