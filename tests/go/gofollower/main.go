// A follower with Go exitdir's semantics (chainguard-dev/exitdir, exitdir.go: Aware):
// add an fsnotify watch on $EXIT_DIR, list it, and cancel when any entry exists or any Create event
// arrives. Written here for the wire-compatibility tests; Go exitdir itself cannot be fetched offline.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

func aware(ctx context.Context) context.Context {
	dir := strings.TrimSuffix(os.Getenv("EXIT_DIR"), "/") + "/"
	ctx, cancel := context.WithCancel(ctx)
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		panic(err)
	}
	if err := watcher.Add(dir); err != nil {
		panic(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		panic(err)
	}
	if len(entries) > 0 {
		cancel()
		return ctx
	}
	go func() {
		for event := range watcher.Events {
			if event.Op&fsnotify.Create == fsnotify.Create {
				fmt.Println("event", strings.TrimPrefix(event.Name, dir))
				cancel()
				return
			}
		}
	}()
	return ctx
}

func main() {
	ctx := aware(context.Background())
	fmt.Println("ready")
	select {
	case <-ctx.Done():
		fmt.Println("tripped")
	case <-time.After(30 * time.Second):
		fmt.Println("timeout")
		os.Exit(1)
	}
}
