package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestDelete(t *testing.T) {
	cp := newControlPlane(t)
	cp.mustRun(t, "apply", "-f", tutorialDir)

	out := cp.mustRun(t, "delete", "vs", "reviews", "unreliable-service")
	want := "virtualservice.networking.istio.io \"reviews\" deleted\nvirtualservice.networking.istio.io \"unreliable-service\" deleted\n"
	if out != want {
		t.Errorf("delete by name:\n%s\nwant:\n%s", out, want)
	}

	_, _, err := cp.run(t, "", "delete", "virtualservice", "reviews", "bookinfo")
	if err == nil || err.Error() != `Error from server (NotFound): virtualservices.networking.istio.io "reviews" not found` {
		t.Errorf("missing: %v", err)
	}
	if n := len(cp.store.Snapshot().List("VirtualService")); n != 1 {
		t.Errorf("a failed delete removed objects: %d left, want 1", n)
	}

	out, _, err = cp.run(t, "", "delete", "vs", "reviews", "bookinfo", "--ignore-not-found")
	if err != nil || out != "virtualservice.networking.istio.io \"bookinfo\" deleted\n" {
		t.Errorf("--ignore-not-found: %q %v", out, err)
	}
	out, _, err = cp.run(t, "", "delete", "vs", "reviews", "--ignore-not-found")
	if err != nil || out != "" {
		t.Errorf("--ignore-not-found with nothing to delete: %q %v", out, err)
	}

	out = cp.mustRun(t, "delete", "-f", filepath.Join(tutorialDir, "01-bookinfo-gateway.yaml"), "--ignore-not-found")
	if out != "gateway.networking.istio.io \"bookinfo-gateway\" deleted\n" {
		t.Errorf("delete -f: %q", out)
	}
	out = cp.mustRun(t, "delete", "dr/reviews", "pa/default")
	if out != "destinationrule.networking.istio.io \"reviews\" deleted\npeerauthentication.security.istio.io \"default\" deleted\n" {
		t.Errorf("delete KIND/NAME: %q", out)
	}

	stdin := readFile(t, filepath.Join(tutorialDir, "08-authorization-policy-productpage-viewer.yaml"))
	out, _, err = cp.run(t, stdin, "delete", "-f", "-")
	if err != nil || out != "authorizationpolicy.security.istio.io \"productpage-viewer\" deleted\n" {
		t.Errorf("delete -f -: %q %v", out, err)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"delete"}, "you must provide one or more resources by argument or filename"},
		{[]string{"delete", "vs"}, "no name was specified"},
		{[]string{"delete", "frob", "x"}, `the server doesn't have a resource type "frob"`},
		{[]string{"delete", "-f", tutorialDir, "vs", "x"}, "give either -f or KIND NAME..., not both"},
	} {
		if _, _, err := cp.run(t, "", tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("skein %s: %v, want %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
}
