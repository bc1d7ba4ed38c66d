// Package local is Skein's laptop runner, the engine behind `skein up`: a
// tiny kubelet, Deployment controller and sidecar injector in one. It starts
// the control plane as a child process, keeps every Deployment's pods running
// as local processes on loopback addresses (a pod IP for the sidecar, an app
// IP for the application, as Istio's INTERCEPTION_MODE=NONE), injects
// sidecars by Istio's rules and registers each pod in the store as a
// Kubernetes Pod so the registry can turn it into endpoints.
package local
