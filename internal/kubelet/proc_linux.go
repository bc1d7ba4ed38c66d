package kubelet

import "syscall"

// childProcAttr puts a child in its own process group (so stopping it
// reaches its own children) and has the kernel kill it if the runner dies
// without cleaning up.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
