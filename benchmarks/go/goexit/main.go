// The Go leader of the first-call benchmark: a fresh process whose first act is Go exitdir's Exit()
// (chainguard-dev/exitdir, exitdir.go: os.Create of EXIT_DIR/exitFile, left open), in the directory named
// by its argument. Prints CLOCK_MONOTONIC in ns taken just before the call.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

func monotonicNs() int64 {
	var ts syscall.Timespec
	// CLOCK_MONOTONIC is 1 on Linux: the clock of Python's time.monotonic_ns().
	if _, _, errno := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		panic(errno)
	}
	return ts.Nano()
}

func main() {
	start := monotonicNs()
	if _, err := os.Create(filepath.Join(os.Args[1], "exitFile")); err != nil {
		panic(err)
	}
	fmt.Println(start)
}
