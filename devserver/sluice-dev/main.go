// Command sluice-dev runs Sluice's development Temporal server (package
// devserver: every service in one process, SQLite persistence, the Web
// UI) for `sluice run --dev`, which starts it as a child process so that
// the sluice command line itself does not link the server and starts in
// milliseconds.
//
//	sluice-dev [--db FILE] [--ip IP] [--port PORT] [--ui-port PORT] [--namespace NS]
//
// Once the frontend answers it writes one JSON line to stdout,
// {"host_port": ..., "namespace": ..., "ui": ...} ("ui" is "" without the
// Web UI), and runs until it gets SIGINT or SIGTERM or, with
// --stop-at-stdin-eof, until its stdin is closed (the parent that started
// it exited, even killed); then it stops the server and exits 0. Errors
// are one line on stderr and exit code 1.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluicehq/sluice/devserver"
)

// Ready is the line sluice-dev writes once the server answers.
type Ready struct {
	HostPort  string `json:"host_port"`
	Namespace string `json:"namespace"`
	UI        string `json:"ui"`
}

func main() {
	var o devserver.Options
	flag.StringVar(&o.DBPath, "db", "", "the SQLite file (default .sluice/temporal.db)")
	flag.StringVar(&o.IP, "ip", "", "the address to listen on (default 127.0.0.1)")
	flag.IntVar(&o.Port, "port", 0, "the frontend's gRPC port; the next three ports are taken too (default 7233)")
	flag.IntVar(&o.UIPort, "ui-port", 0, "the Web UI's port; -1 disables it (default 8233)")
	flag.StringVar(&o.Namespace, "namespace", "", "the namespace to create (default \"default\")")
	stdinEOF := flag.Bool("stop-at-stdin-eof", false, "stop once stdin is closed (for a parent process that holds its other end)")
	flag.Parse()
	// Signals are caught before the server starts, so that one sent
	// while it starts still stops it cleanly.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	srv, err := devserver.Start(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice-dev:", err)
		os.Exit(1)
	}
	b, _ := json.Marshal(Ready{HostPort: srv.HostPort(), Namespace: srv.Namespace(), UI: srv.UIAddress()})
	os.Stdout.Write(append(b, '\n'))
	if *stdinEOF {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			stop <- syscall.SIGTERM
		}()
	}
	<-stop
	srv.Stop()
}
