package deploy

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestKustomizeRenders asks kubectl, where it is installed, to build
// deploy/k8s the way `kubectl apply -k deploy/k8s` does (offline: no
// cluster is needed). Every object of the directory must come out, in the
// kustomization's namespace, with the images pinned to its tags.
func TestKustomizeRenders(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("no kubectl here: deploy/k8s is checked by TestKubernetes only")
	}
	out, err := exec.Command("kubectl", "kustomize", repoPath("deploy/k8s")).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/k8s: %v\n%s", err, out)
	}
	docs, err := decodeYAMLDocs(out)
	if err != nil {
		t.Fatalf("the rendered manifests do not parse: %v", err)
	}
	k := loadManifests(t)
	var rendered []string
	images := map[string]bool{}
	for _, o := range docs {
		key := str(o, "kind") + "/" + str(o, "metadata", "name")
		rendered = append(rendered, key)
		if str(o, "kind") != "Namespace" && str(o, "metadata", "namespace") != k.ns {
			t.Errorf("%s rendered in namespace %q, want %q", key, str(o, "metadata", "namespace"), k.ns)
		}
		for _, c := range list(o, "spec", "template", "spec", "containers") {
			images[str(c, "image")] = true
		}
	}
	slices.Sort(rendered)
	if want := sortedKeys(k.objects); !slices.Equal(rendered, want) {
		t.Errorf("kubectl kustomize renders %v; the directory holds %v", rendered, want)
	}
	for _, img := range list(k.kust, "images") {
		want := str(img, "name") + ":" + str(img, "newTag")
		if !images[want] {
			t.Errorf("no container runs %s after kustomize (images: %v)", want, sortedKeys(images))
		}
	}
	for img := range images {
		if strings.HasPrefix(img, "usagefleet/") && !strings.Contains(img, ":") {
			t.Errorf("image %s is not pinned to a tag", img)
		}
	}
}
