package local

import (
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testDeployment() *appsv1.Deployment {
	two := int32(2)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "details-v1", Namespace: "bookinfo"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &two,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "details"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "details", "version": "v1"}},
				Spec: corev1.PodSpec{
					ServiceAccountName: "bookinfo-details",
					Containers: []corev1.Container{{
						Name: "details", Image: "skein/bookinfo", Command: []string{"bookinfo", "details"},
						Args:  []string{"--name=$(POD_NAME)"},
						Ports: []corev1.ContainerPort{{ContainerPort: 9080}},
					}},
				},
			},
		},
	}
}

func TestTemplateHash(t *testing.T) {
	base := testDeployment()
	h := templateHash(&base.Spec.Template)
	if len(h) != templateHashLen || strings.Trim(h, nameAlphabet) != "" {
		t.Fatalf("hash %q: want %d characters of %q", h, templateHashLen, nameAlphabet)
	}
	if again := templateHash(&testDeployment().Spec.Template); again != h {
		t.Errorf("same template hashed differently: %s vs %s", h, again)
	}
	scaled := testDeployment()
	*scaled.Spec.Replicas = 5
	if templateHash(&scaled.Spec.Template) != h {
		t.Errorf("replicas are not part of the template, but changed the hash")
	}
	changes := map[string]func(d *appsv1.Deployment){
		"image": func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "other" },
		"args":  func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Args = nil },
		"env": func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "1"}}
		},
		"label":      func(d *appsv1.Deployment) { d.Spec.Template.Labels["version"] = "v2" },
		"annotation": func(d *appsv1.Deployment) { d.Spec.Template.Annotations = map[string]string{"x": "y"} },
		"account":    func(d *appsv1.Deployment) { d.Spec.Template.Spec.ServiceAccountName = "other" },
	}
	for name, change := range changes {
		d := testDeployment()
		change(d)
		if templateHash(&d.Spec.Template) == h {
			t.Errorf("changing the template's %s did not change the hash", name)
		}
	}
}

func TestPodName(t *testing.T) {
	re := regexp.MustCompile(`^details-v1-abcdfghjkl-[` + nameAlphabet + `]{5}$`)
	seen := map[string]bool{}
	for range 50 {
		n := podName("details-v1", "abcdfghjkl", func(s string) bool { return seen[s] })
		if !re.MatchString(n) {
			t.Fatalf("pod name %q does not look like <deployment>-<hash>-<5 chars>", n)
		}
		if seen[n] {
			t.Fatalf("pod name %q handed out twice", n)
		}
		seen[n] = true
	}
	// A taken name is never returned.
	calls := 0
	second := podName("x", "h", func(s string) bool { calls++; return calls == 1 })
	if calls != 2 || second == "" {
		t.Errorf("podName did not retry a taken name (calls=%d)", calls)
	}
}

func TestValidateDeployment(t *testing.T) {
	neg := int32(-1)
	tests := []struct {
		name   string
		change func(d *appsv1.Deployment)
		want   string
	}{
		{"valid", func(*appsv1.Deployment) {}, ""},
		{"negative replicas", func(d *appsv1.Deployment) { d.Spec.Replicas = &neg }, "spec.replicas"},
		{"no selector", func(d *appsv1.Deployment) { d.Spec.Selector = nil }, "spec.selector: required"},
		{"empty selector", func(d *appsv1.Deployment) { d.Spec.Selector = &metav1.LabelSelector{} }, "at least one label"},
		{"selector mismatch", func(d *appsv1.Deployment) { d.Spec.Selector.MatchLabels["app"] = "ratings" }, "do not match spec.selector"},
		{"bad expression", func(d *appsv1.Deployment) {
			d.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near"}}
		}, "spec.selector"},
		{"no containers", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers = nil }, "containers: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDeployment()
			tt.change(d)
			err := validateDeployment(d)
			if tt.want == "" {
				if err != nil {
					t.Errorf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if replicasOf(&appsv1.Deployment{}) != 1 {
		t.Errorf("replicas default to 1")
	}
}
