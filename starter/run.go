package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/devserver"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/workflows"
)

func newRunCmd(g *globals) *cobra.Command {
	var dev, paused bool
	var uiPort int
	var allowEnv []string
	cmd := &cobra.Command{
		Use:   "run [--dev] FILE",
		Short: "Start a pipeline and follow its progress",
		Long: `Start a pipeline and follow its progress on stderr: per connector its state,
records, records/s and end of input, and each connector's fatal_error once. It
exits 0 once every input connector has finished when all of them are bounded;
1 once connectors have failed and no connector can make progress (the others
finished, or waiting for a failed one); otherwise it follows until interrupted,
exiting 130 on SIGINT (Ctrl-C) and 143 on SIGTERM. The pipeline's workflow
keeps running and its state: run the same command to follow it again.

--dev runs an embedded Temporal server (SQLite in .sluice/temporal.db, frontend
127.0.0.1:7233), its Web UI (http://127.0.0.1:8233) and a worker in this process.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := connectors.CheckPatterns(allowEnv); err != nil {
				return err
			}
			p, notices, err := sluice.Load(args[0], builtin.Registry())
			printNotices(notices)
			if err != nil {
				return err
			}
			ctx, interrupted := interruptible(cmd.Context())
			var c client.Client
			if dev {
				srv, err := devserver.Start(devserver.Options{UIPort: uiPort})
				if err != nil {
					return err
				}
				defer srv.Stop()
				opts, err := sluice.ClientOptions()
				if err != nil {
					return err
				}
				opts.HostPort, opts.Namespace, opts.Logger = srv.HostPort(), srv.Namespace(), silent{}
				if c, err = client.Dial(opts); err != nil {
					return err
				}
				w := sluice.NewWorker(c, sluice.WorkerOptions{DataDir: g.dataDir, Store: g.storeOptions(), TaskQueue: g.taskQueue, AllowEnv: allowEnv})
				if err := w.Start(); err != nil {
					return err
				}
				defer w.Stop()
				if ui := srv.UIAddress(); ui != "" {
					fmt.Fprintf(os.Stderr, "Temporal Web UI: %s/namespaces/%s/workflows/%s\n", ui, srv.Namespace(), pipeline.WorkflowID(p.Name))
				}
			} else if c, err = dial(ctx); err != nil {
				return err
			}
			defer c.Close()
			run, err := sluice.Start(ctx, c, p, sluice.StartOptions{TaskQueue: g.taskQueue, Paused: paused})
			switch {
			case errors.Is(err, sluice.ErrAlreadyRunning):
				fmt.Fprintf(os.Stderr, "pipeline %s is running already: following it\n", p.Name)
			case err != nil:
				return err
			default:
				fmt.Fprintf(os.Stderr, "started pipeline %s (workflow %s); table store: %s\n", p.Name, run.GetID(), g.dataDir)
			}
			err = follow(ctx, c, p, os.Stderr)
			if code := interrupted(); code != 0 {
				fmt.Fprintf(os.Stderr, "\ninterrupted; pipeline %s's workflow keeps its state: run the same command to go on\n", p.Name)
				return exitCode(code)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&dev, "dev", false, "run an embedded Temporal server, its Web UI and a worker in this process")
	cmd.Flags().BoolVar(&paused, "paused", false, "start the pipeline Paused")
	cmd.Flags().IntVar(&uiPort, "ui-port", 8233, "the Web UI's port with --dev; -1 disables it")
	cmd.Flags().StringArrayVar(&allowEnv, "allow-env", nil, "with --dev: a glob of environment variables connector configs may read with ${env:NAME} (repeatable; default SLUICE_*)")
	return cmd
}

// exitCode is an error that makes sluice exit with that code and print
// nothing more.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit code %d", int(e)) }

// interruptible returns a context canceled by SIGINT or SIGTERM, and a
// function that returns the shell's exit code for the signal received
// (130 for SIGINT, 143 for SIGTERM: 128 + the signal number) or 0.
func interruptible(parent context.Context) (context.Context, func() int) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	var got atomic.Int32
	go func() {
		select {
		case s := <-sigs:
			got.Store(int32(128 + s.(syscall.Signal)))
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() int { return int(got.Load()) }
}

// stuckError is a pipeline in which no connector can make progress any
// more because some failed.
type stuckError struct {
	pipeline string
	failed   []string
}

func (e *stuckError) Error() string {
	return fmt.Sprintf("pipeline %s: no connector can make progress: %s failed", e.pipeline, strings.Join(e.failed, ", "))
}

// canProgress reports whether the connector ep may still ingest: it is
// running or paused (a user can start it), or it waits for connectors
// that all may still finish. Finished and failed connectors cannot.
func canProgress(ep string, byName map[string]workflows.ConnectorStats, deps map[string][]string, seen map[string]bool) bool {
	in := byName[ep]
	switch {
	case in.Finished || in.FatalError != nil:
		return false
	case len(in.WaitingFor) == 0:
		return true
	case seen[ep]:
		return false
	}
	seen[ep] = true
	for _, d := range deps[ep] {
		if !byName[d].Finished && !canProgress(d, byName, deps, seen) {
			return false
		}
	}
	return true
}

// follow renders progress until every connector of an all-bounded pipeline
// has finished, the workflow closes, or ctx ends. Each connector's
// fatal_error is printed once, when first seen; once connectors have
// failed and no connector can make progress, follow returns a
// *stuckError.
func follow(ctx context.Context, c client.Client, p *pipeline.Pipeline, out io.Writer) error {
	deps := p.StartAfter()
	reported := map[string]bool{}
	reg := builtin.Registry()
	bounded := true
	for _, t := range p.Tables {
		schema, _ := t.Schema()
		for i := range t.Connectors {
			// outputs finish once every input has: they do not bound the run
			bounded = bounded && (t.Connectors[i].IsOutput() || reg.Bounded(&t.Connectors[i], schema))
		}
	}
	tty := isTerminal(out)
	prev := map[string]int64{}
	prevTime := time.Now()
	drawn, lastPrint := 0, time.Time{}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		s, err := sluice.Stats(ctx, c, p.Name)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if err == nil {
			now := time.Now()
			dt := now.Sub(prevTime).Seconds()
			all := append(append([]workflows.ConnectorStats{}, s.Inputs...), s.Outputs...)
			lines := []string{fmt.Sprintf("%-28s %-8s %12s %10s  %s", "CONNECTOR", "STATE", "RECORDS", "REC/S", "STATUS")}
			for _, in := range all {
				rate := 0.0
				if dt > 0 {
					rate = float64(records(in)-prev[in.EndpointName]) / dt
				}
				prev[in.EndpointName] = records(in)
				lines = append(lines, fmt.Sprintf("%-28s %-8s %12d %10.0f  %s", in.EndpointName, in.State, records(in), rate, status(in)))
			}
			prevTime = now
			done := bounded && s.GlobalMetrics.PipelineComplete
			var notes, failed []string
			byName := map[string]workflows.ConnectorStats{}
			for _, in := range all {
				byName[in.EndpointName] = in
				if in.FatalError != nil {
					failed = append(failed, in.EndpointName)
					if !reported[in.EndpointName] {
						reported[in.EndpointName] = true
						msg := strings.TrimPrefix(*in.FatalError, in.EndpointName+": ")
						notes = append(notes, fmt.Sprintf("connector %s failed: %s", in.EndpointName, msg))
					}
				}
			}
			stuck := len(failed) > 0
			for _, in := range all {
				stuck = stuck && !canProgress(in.EndpointName, byName, deps, map[string]bool{})
			}
			if tty {
				if drawn > 0 {
					fmt.Fprintf(out, "\x1b[%dA", drawn)
				}
				for _, l := range notes {
					fmt.Fprintf(out, "\x1b[2K%s\n", l)
				}
				for _, l := range lines {
					fmt.Fprintf(out, "\x1b[2K%s\n", l)
				}
				drawn = len(lines)
			} else {
				for _, l := range notes {
					fmt.Fprintln(out, l)
				}
				if done || stuck || time.Since(lastPrint) >= 5*time.Second {
					fmt.Fprintln(out, strings.Join(lines, "\n"))
					lastPrint = time.Now()
				}
			}
			if stuck {
				return &stuckError{pipeline: p.Name, failed: failed}
			}
			if done {
				fmt.Fprintf(out, "pipeline %s: every input connector finished (%d records)\n", p.Name, s.GlobalMetrics.TotalInputRecords)
				return nil
			}
			if d, err := c.DescribeWorkflowExecution(ctx, pipeline.WorkflowID(p.Name), ""); err == nil &&
				d.WorkflowExecutionInfo.Status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				fmt.Fprintf(out, "pipeline %s: workflow %s\n", p.Name, strings.ToLower(strings.TrimPrefix(d.WorkflowExecutionInfo.Status.String(), "WORKFLOW_EXECUTION_STATUS_")))
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// records is an input's committed records, an output's delivered ones.
func records(c workflows.ConnectorStats) int64 {
	if c.OutputMetrics != nil {
		return c.OutputMetrics.TransmittedRecords
	}
	return c.Metrics.TotalRecords
}

func status(in workflows.ConnectorStats) string {
	switch {
	case in.FatalError != nil:
		return "failed" // its error is printed once, above the table
	case in.Finished:
		return "finished (end of input)"
	case len(in.WaitingFor) > 0:
		return "waiting for " + strings.Join(in.WaitingFor, ", ")
	case in.Active:
		if in.Metrics.NumParseErrors > 0 {
			return fmt.Sprintf("ingesting (%d parse errors)", in.Metrics.NumParseErrors)
		}
		return "ingesting"
	}
	return "paused"
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
