//go:build !unix

package kubelet

import (
	"os"
	"syscall"
)

var (
	sigTerm = os.Interrupt
	sigKill = os.Kill
)

func childProcAttr() *syscall.SysProcAttr { return nil }

// signalGroup signals only the process itself: without process groups its
// own children are not reached.
func signalGroup(pid int, sig os.Signal) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Signal(sig)
	}
}
