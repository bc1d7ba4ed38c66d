// Package kube is Skein's access to a Kubernetes API server: finding
// credentials the way kubectl does and building the dynamic client that the
// control plane's mirror, the injector webhook's installer and the node agent
// share.
//
// Only client-go's dynamic client and informers are used, never the typed
// clientset: its scheme registration runs at start-up in every skein process,
// sidecars included, and costs each of them heap for nothing.
package kube

import (
	"fmt"
	"os"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config returns the REST config for the cluster: kubeconfig when set, else
// $KUBECONFIG or ~/.kube/config (kubectl's rules, current context), else the
// in-cluster service account when running in a pod.
func Config(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" && os.Getenv("KUBECONFIG") == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		if _, err := os.Stat(clientcmd.RecommendedHomeFile); err != nil {
			cfg, err := rest.InClusterConfig()
			if err != nil {
				return nil, fmt.Errorf("in-cluster config: %w", err)
			}
			return cfg, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "skein"
	return cfg, nil
}

// Dynamic returns a dynamic client for the cluster Config finds.
func Dynamic(kubeconfig string) (dynamic.Interface, *rest.Config, error) {
	cfg, err := Config(kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return dc, cfg, nil
}
