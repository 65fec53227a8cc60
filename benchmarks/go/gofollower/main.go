// The Go follower of the latency benchmark: Go exitdir's Aware() (chainguard-dev/exitdir, exitdir.go) on
// each directory read from stdin, one per line. Per directory: an fsnotify watcher, Add, ReadDir, then a
// goroutine that cancels a context on the first Create event, as Aware does; the main goroutine prints
// "ready" once the watch is in place, waits on ctx.Done() and prints CLOCK_MONOTONIC in ns at that moment
// (the protocol of benchmarks/_follower.py). Aware sets its watch up inside its goroutine; here the ready
// line waits for that, or the benchmark's leader could write before anything watches.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"unsafe"

	"github.com/fsnotify/fsnotify"
)

// monotonicNs reads the clock Python's time.monotonic_ns() reads, so that the two processes' stamps compare.
func monotonicNs() int64 {
	var ts syscall.Timespec
	// CLOCK_MONOTONIC is 1 on Linux.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		panic(errno)
	}
	return ts.Nano()
}

func aware(ctx context.Context, dir string) (context.Context, *fsnotify.Watcher) {
	dir = strings.TrimSuffix(dir, "/") + "/"
	ctx, cancel := context.WithCancel(ctx)
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		panic(err)
	}
	if err := watcher.Add(dir); err != nil {
		panic(err)
	}
	files, err := os.ReadDir(dir)
	if err != nil {
		panic(err)
	}
	if len(files) > 0 {
		cancel()
		return ctx, watcher
	}
	go func() {
		for {
			select {
			case event, ok := <-watcher.Events:
				if !ok {
					return
				}
				if event.Op&fsnotify.Create == fsnotify.Create {
					cancel()
					return
				}
			case _, ok := <-watcher.Errors:
				if !ok {
					return
				}
			}
		}
	}()
	return ctx, watcher
}

func main() {
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		ctx, watcher := aware(context.Background(), lines.Text())
		fmt.Println("ready")
		<-ctx.Done()
		done := monotonicNs()
		// Go exitdir keeps its watcher for the process's life; one per trial must be closed, after the stamp.
		watcher.Close()
		fmt.Println(done)
	}
}
