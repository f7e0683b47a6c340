// A Go program (no GNU build-id, only .note.go.buildid) that dies of SIGSEGV through the Go
// runtime: GOTRACEBACK=crash makes the runtime print the panic's goroutine, then raise SIGABRT
// with a core. Two different bugs, chosen by the first argument: "lookup" dereferences a nil
// map entry in main.(*Cache).lookup, "pop" a nil list node in main.(*Queue).pop.
package main

import (
	"fmt"
	"os"
)

type entry struct{ value int }

type Cache struct{ entries map[string]*entry }

//go:noinline
func (c *Cache) lookup(key string) int {
	return c.entries[key].value
}

//go:noinline
func handle(c *Cache, key string) int {
	return c.lookup(key) + 1
}

type node struct {
	next  *node
	value int
}

type Queue struct{ head *node }

//go:noinline
func (q *Queue) pop() int {
	n := q.head
	q.head = n.next
	return n.value
}

//go:noinline
func drain(q *Queue) int {
	return q.pop() + q.pop()
}

func main() {
	bug := "lookup"
	if len(os.Args) > 1 {
		bug = os.Args[1]
	}
	switch bug {
	case "lookup":
		c := &Cache{entries: map[string]*entry{"present": {1}}}
		fmt.Println(handle(c, "absent"))
	case "pop":
		fmt.Println(drain(&Queue{head: &node{value: 1}}))
	}
}
