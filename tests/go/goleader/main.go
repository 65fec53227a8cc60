// A leader with Go exitdir's semantics (chainguard-dev/exitdir, exitdir.go: Exit):
// os.Create($EXIT_DIR/exitFile), an empty file.
package main

import (
	"os"
	"path/filepath"
)

func main() {
	f, err := os.Create(filepath.Join(os.Getenv("EXIT_DIR"), "exitFile"))
	if err != nil {
		panic(err)
	}
	f.Close()
}
