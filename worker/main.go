// Command worker is a Sluice worker: it runs Pipeline workflows and their
// Ingest activities on the "sluice" task queue. It connects with the
// standard Temporal environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
// TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE). Run several against
// one cluster to spread connectors over machines; they must share
// --data-dir.
//
//	go run ./worker [--dev [--db FILE] [--ip IP] [--port PORT] [--ui-port PORT] [--namespace NS]]
//	    [--data-dir DIR] [--s3-endpoint-url URL] [--s3-region REGION] [--task-queue NAME]
//	    [--allow-env GLOB]... [--metrics-addr HOST:PORT] [--ready-json] [--stop-at-stdin-eof] [-C DIR]
//
// Connector configs read environment variables with ${env:NAME} only
// when NAME matches an --allow-env glob (default SLUICE_*), so pipeline
// authors cannot read the worker's own credentials.
//
// --dev also starts an embedded Temporal server (package devserver:
// SQLite in --db, default .sluice/temporal.db; frontend --ip:--port,
// default 127.0.0.1:7233) and its Web UI on --ui-port (default 8233, -1
// for none). `sluice run --dev` runs this program so as a child process
// (the sluice command line itself links neither the server nor the
// connectors' libraries, and starts in milliseconds): with --ready-json
// the worker writes one JSON line to stdout once it polls,
// {"host_port": ..., "namespace": ..., "ui": ...} ("ui" is "" without the
// Web UI), and with --stop-at-stdin-eof it stops once its stdin is
// closed (the parent that started it exited, even killed), as on SIGINT
// or SIGTERM: the worker stops (each running connector's activity is
// canceled and keeps its checkpoint), then the server.
//
// --metrics-addr HOST:PORT (default empty: off) serves Prometheus
// metrics at http://HOST:PORT/metrics: each connector that runs on this
// worker, labelled pipeline, table and connector (sluice_input_* and
// sluice_output_*, its cumulative counters as in its stats; see package
// metrics), the Temporal SDK's own metrics (temporal_*), and the Go
// runtime's and the process's (go_*, process_*). http://HOST:PORT/healthz
// answers 200 "ok" once the worker has started polling, 503 before.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/activities"
	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/connectors/s3"
	"github.com/sluicehq/sluice/devserver"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/store"
)

// Ready is the line --ready-json writes to stdout once the worker polls:
// the frontend's address and namespace it polls, and the Web UI's URL
// with --dev ("" otherwise).
type Ready struct {
	HostPort  string `json:"host_port"`
	Namespace string `json:"namespace"`
	UI        string `json:"ui"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run() error {
	dev := flag.Bool("dev", false, "start an embedded Temporal server and its Web UI")
	var devOpts devserver.Options
	flag.StringVar(&devOpts.DBPath, "db", "", "with --dev: the server's SQLite file (default .sluice/temporal.db)")
	flag.StringVar(&devOpts.IP, "ip", "", "with --dev: the address the server listens on (default 127.0.0.1)")
	flag.IntVar(&devOpts.Port, "port", 0, "with --dev: the frontend's gRPC port; the next three ports are taken too (default 7233)")
	flag.IntVar(&devOpts.UIPort, "ui-port", 0, "with --dev: the Web UI's port; -1 disables it (default 8233)")
	flag.StringVar(&devOpts.Namespace, "namespace", "", "with --dev: the namespace to create (default \"default\")")
	readyJSON := flag.Bool("ready-json", false, "once polling, write {\"host_port\", \"namespace\", \"ui\"} as one JSON line to stdout")
	stdinEOF := flag.Bool("stop-at-stdin-eof", false, "stop once stdin is closed (for a parent process that holds its other end)")
	chdir := flag.String("C", "", "change to this directory before anything else, as go -C and git -C do (relative paths then resolve from it)")
	dataDir := flag.String("data-dir", sluice.DefaultDataDir, "the table store's root: a directory or s3://bucket/prefix")
	var s3 s3.Settings
	flag.StringVar(&s3.EndpointURL, "s3-endpoint-url", "", "an S3-compatible store for an s3:// --data-dir (path-style requests); credentials from the standard AWS chain")
	flag.StringVar(&s3.Region, "s3-region", "", "the AWS region of an s3:// --data-dir (default: the AWS chain's, else us-east-1)")
	taskQueue := flag.String("task-queue", sluice.DefaultTaskQueue, "the task queue to poll")
	var allowEnv []string
	flag.Func("allow-env", "a glob of environment variables connector configs may read with ${env:NAME} (repeatable; default SLUICE_*)", func(p string) error {
		allowEnv = append(allowEnv, p)
		return connectors.CheckPatterns([]string{p})
	})
	metricsAddr := flag.String("metrics-addr", "", "serve Prometheus metrics at http://HOST:PORT/metrics and a health check at /healthz (default: off)")
	flag.Parse()
	if *chdir != "" {
		if err := os.Chdir(*chdir); err != nil {
			return err
		}
	}
	// Signals are caught before anything starts, so that one sent while
	// the server starts still stops it cleanly.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	if *stdinEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop <- syscall.SIGTERM
		}()
	}

	opts, err := sluice.ClientOptions()
	if err != nil {
		return err
	}
	ui := ""
	if *dev {
		srv, err := devserver.Start(devOpts)
		if err != nil {
			return err
		}
		defer srv.Stop()
		opts.HostPort, opts.Namespace, ui = srv.HostPort(), srv.Namespace(), srv.UIAddress()
		if !*readyJSON {
			fmt.Fprintf(os.Stderr, "Temporal server at %s, Web UI at %s\n", srv.HostPort(), srv.UIAddress())
		}
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts.Logger = tlog.NewStructuredLogger(logger)
	var observer activities.Observer
	var started atomic.Bool
	if *metricsAddr != "" {
		reg := prometheus.NewRegistry()
		collector := metrics.NewCollector(0)
		reg.MustRegister(collector, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		handler, closer := metrics.NewSDKHandler(reg, logger)
		defer closer.Close()
		opts.MetricsHandler, observer = handler, collector
		srv, err := metrics.Serve(*metricsAddr, reg, started.Load)
		if err != nil {
			return err
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		}()
		fmt.Fprintf(os.Stderr, "metrics at http://%s/metrics\n", srv.Addr())
	}
	c, err := client.Dial(opts)
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s: %w", opts.HostPort, err)
	}
	defer c.Close()
	w := sluice.NewWorker(c, sluice.WorkerOptions{DataDir: *dataDir, Store: store.Options{S3: s3}, TaskQueue: *taskQueue, Registry: builtin.Registry(), AllowEnv: allowEnv, Observer: observer})
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()
	started.Store(true)
	if *readyJSON {
		b, _ := json.Marshal(Ready{HostPort: opts.HostPort, Namespace: opts.Namespace, UI: ui})
		if _, err := os.Stdout.Write(append(b, '\n')); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(os.Stderr, "worker polling task queue %q, table store in %s\n", *taskQueue, *dataDir)
	}
	<-stop
	return nil
}
