// Package local is Skein's laptop runner, the engine behind `skein up`: a
// tiny Deployment controller and sidecar injector that starts the control
// plane as a child process, keeps every Deployment's pods running with
// internal/kubelet (local processes on loopback addresses), injects
// sidecars by Istio's rules and registers each pod in the store as a
// Kubernetes Pod so the registry can turn it into endpoints.
package local
