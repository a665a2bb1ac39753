package main

import (
	"os/exec"
	"syscall"
)

// dieWithTest has the kernel stop a child process if the test binary dies
// first (a timeout's panic), so no consortium outlives its test.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
