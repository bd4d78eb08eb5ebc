// Command freeport prints N distinct TCP ports that are free on 127.0.0.1 at the
// moment it runs, one per line, so that several test environments can run on
// one machine at once.
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
)

func main() {
	n := 1
	if len(os.Args) > 1 {
		v, err := strconv.Atoi(os.Args[1])
		if err != nil || v < 1 || v > 64 {
			fmt.Fprintf(os.Stderr, "freeport: the count must be 1..64, got %q\n", os.Args[1])
			os.Exit(2)
		}
		n = v
	}
	// All listeners stay open until every port is chosen, so the ports are distinct.
	var listeners []net.Listener
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintf(os.Stderr, "freeport: %v\n", err)
			os.Exit(1)
		}
		listeners = append(listeners, ln)
	}
	for _, ln := range listeners {
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
	}
}
