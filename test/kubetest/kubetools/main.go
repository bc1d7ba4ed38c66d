// Command kubetools builds the Kubernetes test binaries into kubetest's
// cache (what `make kube-tools` runs) and prints the directory, so a
// developer can pre-build them instead of waiting in the first e2e test.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/skein-mesh/skein/test/kubetest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dir, err := kubetest.Build(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(dir)
}
