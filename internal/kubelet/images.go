package kubelet

import (
	"sort"
	"strings"
)

// imageSpec is what a node agent runs for an image: its ENTRYPOINT, CMD
// and ENV, in terms of programs on this machine.
type imageSpec struct {
	Entrypoint, Cmd []string
	Env             []EnvVar
}

// Istio's Bookinfo images are one Java/Node/Python/Ruby program each; the
// Go rewrites are `skein bookinfo <service>`. reviews' three images differ
// only in the environment their Dockerfiles set.
var istioBookinfoImages = map[string]imageSpec{
	"examples-bookinfo-productpage-v1": {Entrypoint: []string{"bookinfo", "productpage"}},
	"examples-bookinfo-details-v1":     {Entrypoint: []string{"bookinfo", "details"}},
	"examples-bookinfo-ratings-v1":     {Entrypoint: []string{"bookinfo", "ratings"}},
	"examples-bookinfo-reviews-v1": {Entrypoint: []string{"bookinfo", "reviews"},
		Env: []EnvVar{{"ENABLE_RATINGS", "false"}, {"SERVICE_VERSION", "v1"}}},
	"examples-bookinfo-reviews-v2": {Entrypoint: []string{"bookinfo", "reviews"},
		Env: []EnvVar{{"ENABLE_RATINGS", "true"}, {"STAR_COLOR", "black"}, {"SERVICE_VERSION", "v2"}}},
	"examples-bookinfo-reviews-v3": {Entrypoint: []string{"bookinfo", "reviews"},
		Env: []EnvVar{{"ENABLE_RATINGS", "true"}, {"STAR_COLOR", "red"}, {"SERVICE_VERSION", "v3"}}},
}

// imageProgram maps an image reference to the built-in program it stands
// for, by the last path element of its repository (registry, tag and
// digest do not matter): skein (the mesh binary, as the injector's
// istio-proxy container uses it), bookinfo (samples/bookinfo/Dockerfile:
// ENTRYPOINT bookinfo, CMD productpage) and Istio's Bookinfo images.
func imageProgram(image string) (imageSpec, bool) {
	name := imageName(image)
	switch name {
	case "skein":
		return imageSpec{Entrypoint: []string{"skein"}}, true
	case "bookinfo":
		return imageSpec{Entrypoint: []string{"bookinfo"}, Cmd: []string{"productpage"}}, true
	}
	spec, ok := istioBookinfoImages[name]
	return spec, ok
}

// imageName is the last path element of an image's repository:
// "docker.io/istio/examples-bookinfo-details-v1:1.20.2" → "examples-bookinfo-details-v1".
func imageName(image string) string {
	image, _, _ = strings.Cut(image, "@")
	if i := strings.LastIndexByte(image, '/'); i >= 0 {
		image = image[i+1:]
	}
	name, _, _ := strings.Cut(image, ":")
	return name
}

// knownImageNames lists the image names imageProgram knows, for messages.
func knownImageNames() []string {
	names := []string{"skein", "bookinfo"}
	for n := range istioBookinfoImages {
		names = append(names, n)
	}
	sort.Strings(names[2:])
	return names
}
