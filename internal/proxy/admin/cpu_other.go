//go:build !unix

package admin

import "io"

// writeContainerCPU has no portable source of process CPU time here.
func writeContainerCPU(io.Writer) {}
