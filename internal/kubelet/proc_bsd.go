//go:build unix && !linux

package kubelet

import "syscall"

// childProcAttr puts a child in its own process group. Without Pdeathsig
// (Linux only) children of a runner killed with SIGKILL survive; a normal
// shutdown stops them all.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
