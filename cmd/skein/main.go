// Command skein is the whole mesh in one binary: control plane, proxy, CLI
// and local runner. All behaviour lives in internal/cli and below.
package main

import (
	"os"

	"github.com/skein-mesh/skein/internal/cli"
)

func main() {
	os.Exit(cli.Execute())
}
