// Package kubelet runs Kubernetes Pods as local processes on loopback
// addresses: a pod IP for the sidecar (or the app without one) and an app
// IP behind a sidecar, as Istio's INTERCEPTION_MODE=NONE. It owns process
// supervision (restart policy, backoff, process groups), loopback address
// allocation, a container's environment (the downward API, ConfigMaps,
// $(VAR) expansion) and volume paths, readiness probing and the Pod status
// a kubelet reports.
//
// It has two entry points: Kubelet.Run for a Pod as the API server stores
// it (`skein node`), and StartPod for a Plan the caller built itself
// (`skein up`, which plans Deployment pods and their proxies).
package kubelet
