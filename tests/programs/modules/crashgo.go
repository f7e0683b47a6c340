// A Go program (no GNU build-id, only .note.go.buildid) that dies of SIGSEGV through the Go
// runtime: GOTRACEBACK=crash makes the runtime re-raise the signal with a core.
package main

import (
	"fmt"
	"os"
)

//go:noinline
func crashHere(p *int) int {
	return *p
}

//go:noinline
func crashCaller(p *int) int {
	return crashHere(p) + 1
}

func main() {
	var p *int
	if len(os.Args) > 5 {
		p = new(int)
	}
	fmt.Println(crashCaller(p))
}
