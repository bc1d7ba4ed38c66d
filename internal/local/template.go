package local

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// nameAlphabet is Kubernetes' alphabet for generated name parts: no vowels
// (no accidental words) and no look-alike characters.
const nameAlphabet = "bcdfghjklmnpqrstvwxz2456789"

const (
	templateHashLen = 10
	podSuffixLen    = 5
	// labelPodTemplateHash is the label Kubernetes puts on a ReplicaSet's pods.
	labelPodTemplateHash = "pod-template-hash"
)

// templateHash identifies a Deployment's pod template: the same template
// always gives the same hash (JSON encoding sorts map keys), and any change
// to its labels, annotations or spec gives another one, which is what
// triggers a rolling update.
func templateHash(t *corev1.PodTemplateSpec) string {
	doc, err := json.Marshal(struct {
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
		Spec        corev1.PodSpec    `json:"spec"`
	}{t.Labels, t.Annotations, t.Spec})
	if err != nil {
		// PodSpec is plain data; failing to encode it is a programming error.
		panic(fmt.Sprintf("encoding pod template: %v", err))
	}
	sum := sha256.Sum256(doc)
	return encodeName(binary.BigEndian.Uint64(sum[:8]), templateHashLen)
}

func encodeName(v uint64, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = nameAlphabet[v%uint64(len(nameAlphabet))]
		v /= uint64(len(nameAlphabet))
	}
	return string(b)
}

// randomSuffix returns podSuffixLen random characters from nameAlphabet.
func randomSuffix() string {
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return encodeName(binary.LittleEndian.Uint64(raw[:]), podSuffixLen)
}

// podName names a new pod as a Deployment's ReplicaSet would:
// <deployment>-<template hash>-<random>, retrying while taken reports the
// name in use.
func podName(deployment, hash string, taken func(string) bool) string {
	for {
		name := deployment + "-" + hash + "-" + randomSuffix()
		if taken == nil || !taken(name) {
			return name
		}
	}
}

// validateDeployment reports what Kubernetes' API server would reject and
// what the local runner cannot run at all.
func validateDeployment(d *appsv1.Deployment) error {
	if d.Spec.Replicas != nil && *d.Spec.Replicas < 0 {
		return fmt.Errorf("spec.replicas: must be >= 0, got %d", *d.Spec.Replicas)
	}
	if d.Spec.Selector == nil {
		return fmt.Errorf("spec.selector: required")
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return fmt.Errorf("spec.selector: %v", err)
	}
	if sel.Empty() {
		return fmt.Errorf("spec.selector: must select at least one label")
	}
	if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		return fmt.Errorf("spec.template.metadata.labels: %v do not match spec.selector %q", d.Spec.Template.Labels, sel.String())
	}
	if len(d.Spec.Template.Spec.Containers) == 0 {
		return fmt.Errorf("spec.template.spec.containers: required")
	}
	return nil
}

func replicasOf(d *appsv1.Deployment) int {
	if d.Spec.Replicas == nil {
		return 1
	}
	return int(*d.Spec.Replicas)
}
