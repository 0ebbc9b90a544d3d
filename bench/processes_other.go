//go:build !linux

package bench

import (
	"syscall"
	"time"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

// procCPU is not measured outside Linux.
func procCPU(int) (time.Duration, bool) { return 0, false }
