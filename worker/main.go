// Command worker is a Sluice worker: it runs Pipeline workflows and their
// Ingest activities on the "sluice" task queue. It connects with the
// standard Temporal environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
// TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE). Run several against
// one cluster to spread connectors over machines; they must share
// --data-dir.
//
//	go run ./worker [--dev] [--data-dir DIR] [--task-queue NAME] [--allow-env GLOB]...
//
// Connector configs read environment variables with ${env:NAME} only
// when NAME matches an --allow-env glob (default SLUICE_*), so pipeline
// authors cannot read the worker's own credentials.
//
// --dev also starts an embedded Temporal server (SQLite in
// .sluice/temporal.db, frontend 127.0.0.1:7233) and its Web UI on
// http://127.0.0.1:8233.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/s3"
	"github.com/sluicehq/sluice/devserver"
	"github.com/sluicehq/sluice/store"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run() error {
	dev := flag.Bool("dev", false, "start an embedded Temporal server and its Web UI")
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
	flag.Parse()

	opts, err := sluice.ClientOptions()
	if err != nil {
		return err
	}
	if *dev {
		srv, err := devserver.Start(devserver.Options{})
		if err != nil {
			return err
		}
		defer srv.Stop()
		opts.HostPort, opts.Namespace = srv.HostPort(), srv.Namespace()
		fmt.Fprintf(os.Stderr, "Temporal server at %s, Web UI at %s\n", srv.HostPort(), srv.UIAddress())
	}
	opts.Logger = tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	c, err := client.Dial(opts)
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s: %w", opts.HostPort, err)
	}
	defer c.Close()
	w := sluice.NewWorker(c, sluice.WorkerOptions{DataDir: *dataDir, Store: store.Options{S3: s3}, TaskQueue: *taskQueue, AllowEnv: allowEnv})
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()
	fmt.Fprintf(os.Stderr, "worker polling task queue %q, table store in %s\n", *taskQueue, *dataDir)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	return nil
}
