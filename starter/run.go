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
	"go.temporal.io/sdk/client"
	"golang.org/x/term"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/builtin/checks"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/workflows"
)

func newRunCmd(g *globals) *cobra.Command {
	var dev, paused, keepOpen bool
	var uiPort, devPort int
	var allowEnv []string
	cmd := &cobra.Command{
		Use:   "run [--dev] FILE",
		Short: "Start a pipeline and follow its progress",
		Long: `Start a pipeline and follow its progress on stderr: per connector its state
(Starting, Running, Pausing, Paused, Finished, Failed), records, records/s
over the last 5 seconds, parse errors and end of input, and each connector's
fatal_error once.

Once every connector has finished (every input reached end of input and
committed everything, every output delivered it) the pipeline's workflow
completes and sluice run exits 0, unless --keep-open keeps the workflow
running (for connectors to be started later). It exits 1 once connectors have
failed and no connector can make progress (the others finished, or waiting for
a failed one); otherwise it follows until interrupted, exiting 130 on SIGINT
(Ctrl-C) and 143 on SIGTERM. Interrupting sluice run stops following, not the
pipeline: its workflow keeps running (with --dev, until this process and its
worker --dev child, which runs the server and the worker, exit) and keeps
every connector's checkpoint; run the same command to follow it again.

If the pipeline is running already with a different definition, sluice run
applies the changes it can (added and removed connectors, the config of
connectors that are not running) and says what changed, or refuses, naming
what cannot change while it runs; it never silently runs the old definition.

--dev runs an embedded Temporal server (SQLite in .sluice/temporal.db, frontend
127.0.0.1:7233), its Web UI (http://127.0.0.1:8233) and a worker, as a child
process (Sluice's worker program with --dev, found beside sluice, run with
go run ./worker in Sluice's source tree, or on PATH; $SLUICE_WORKER overrides)
that lives as long as sluice run does.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(allowEnv) > 0 && !dev {
				return errors.New("--allow-env configures the --dev worker; without --dev, give --allow-env to your worker")
			}
			if err := connectors.CheckPatterns(allowEnv); err != nil {
				return err
			}
			p, notices, err := sluice.Load(args[0], checks.Registry())
			printNotices(notices)
			if err != nil {
				return err
			}
			ctx, interrupted := interruptible(cmd.Context())
			var c client.Client
			ns := namespace()
			if dev {
				srv, err := startDevServer(ctx, uiPort, devWorker{port: devPort, dataDir: g.dataDir, s3: g.s3, taskQueue: g.taskQueue, allowEnv: allowEnv})
				if err != nil {
					return err
				}
				defer srv.Stop()
				opts, err := sluice.ClientOptions()
				if err != nil {
					return err
				}
				opts.HostPort, opts.Namespace, opts.Logger = srv.HostPort(), srv.Namespace(), silent{}
				ns = opts.Namespace
				if c, err = client.Dial(opts); err != nil {
					return err
				}
				if ui := srv.UIAddress(); ui != "" {
					fmt.Fprintf(os.Stderr, "Temporal Web UI: %s/namespaces/%s/workflows/%s\n", ui, srv.Namespace(), pipeline.WorkflowID(p.Name))
				}
			} else if c, err = dial(ctx); err != nil {
				return err
			}
			defer c.Close()
			run, err := sluice.Start(ctx, c, p, sluice.StartOptions{TaskQueue: g.taskQueue, Paused: paused, StopAtEndOfInput: !keepOpen, Namespace: ns})
			switch {
			case errors.Is(err, sluice.ErrAlreadyRunning):
				ch, err := sluice.Apply(ctx, c, p)
				if err != nil {
					return fmt.Errorf("pipeline %s is running with another definition: %w", p.Name, err)
				}
				if ch.Empty() {
					fmt.Fprintf(os.Stderr, "pipeline %s is running already: following it\n", p.Name)
				} else {
					fmt.Fprintf(os.Stderr, "pipeline %s is running already; its definition changed and was applied: %s\n", p.Name, describeChanges(ch))
				}
			case err != nil:
				return err
			default:
				fmt.Fprintf(os.Stderr, "started pipeline %s (workflow %s); table store: %s\n", p.Name, run.GetID(), g.dataDir)
			}
			err = follow(ctx, c, p, run, os.Stderr)
			if code := interrupted(); code != 0 {
				fmt.Fprintf(os.Stderr, "\ninterrupted; pipeline %s's workflow keeps its state: run the same command to go on\n", p.Name)
				return exitCode(code)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&dev, "dev", false, "run an embedded Temporal server, its Web UI and a worker (a worker --dev child process)")
	cmd.Flags().BoolVar(&paused, "paused", false, "start the pipeline Paused")
	cmd.Flags().BoolVar(&keepOpen, "keep-open", false, "keep the pipeline's workflow running once every connector has finished")
	cmd.Flags().IntVar(&devPort, "port", 7233, "the frontend's gRPC port with --dev (the next three ports are taken too)")
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

// describeChanges says what pipeline.update changed, for one line.
func describeChanges(ch workflows.Changes) string {
	var parts []string
	for _, x := range []struct {
		what string
		eps  []string
	}{{"added", ch.Added}, {"removed", ch.Removed}, {"config changed", ch.Changed}} {
		if len(x.eps) > 0 {
			parts = append(parts, x.what+" "+strings.Join(x.eps, ", "))
		}
	}
	return strings.Join(parts, "; ")
}

// rateWindow is the span records/s are averaged over: commits land about
// once a second, so a shorter window alternates between bursts and zero.
const rateWindow = 5 * time.Second

// rates keeps each connector's recent (time, records) samples.
type rates map[string][]sample

type sample struct {
	at      time.Time
	records int64
}

// add records a sample and returns the records/s over the samples of the
// last rateWindow, and whether at least a second of samples exists.
func (r rates) add(ep string, at time.Time, records int64) (float64, bool) {
	ss := append(r[ep], sample{at, records})
	for len(ss) > 2 && at.Sub(ss[1].at) >= rateWindow {
		ss = ss[1:]
	}
	r[ep] = ss
	first := ss[0]
	dt := at.Sub(first.at).Seconds()
	if dt < 1 {
		return 0, false
	}
	return float64(records-first.records) / dt, true
}

// follow renders progress until the workflow completes, every connector
// of an all-bounded pipeline kept open has finished, or ctx ends. It
// waits on the workflow's result, so it returns as soon as the workflow
// completes, and redraws every 500 ms. Each connector's fatal_error is
// printed once, when first seen; once connectors have failed and no
// connector can make progress, follow returns a *stuckError.
func follow(ctx context.Context, c client.Client, p *pipeline.Pipeline, run client.WorkflowRun, out io.Writer) error {
	deps := p.StartAfter()
	reported := map[string]bool{}
	reg := checks.Registry()
	bounded := true
	for _, t := range p.Tables {
		schema, _ := t.Schema()
		for i := range t.Connectors {
			// outputs finish once every input has: they do not bound the run
			bounded = bounded && (t.Connectors[i].IsOutput() || reg.Bounded(&t.Connectors[i], schema))
		}
	}
	type result struct {
		stats workflows.PipelineStats
		err   error
	}
	ended := make(chan result, 1)
	if run != nil {
		go func() {
			var r result
			r.err = run.Get(ctx, &r.stats)
			ended <- r
		}()
	}
	v := newView(out)
	rs := rates{}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		var s workflows.PipelineStats
		var final *result
		select {
		case r := <-ended:
			final = &r
		default:
		}
		var err error
		if final != nil && final.err == nil {
			s = final.stats
		} else {
			s, err = sluice.Stats(ctx, c, p.Name)
		}
		if err != nil && ctx.Err() == nil && final == nil {
			return err
		}
		if err == nil {
			all := append(append([]workflows.ConnectorStats{}, s.Inputs...), s.Outputs...)
			now := time.Now()
			lines := []string{fmt.Sprintf("%-28s %-9s %12s %10s %7s  %s", "CONNECTOR", "STATE", "RECORDS", "REC/S", "ERRORS", "STATUS")}
			var notes, failed []string
			byName := map[string]workflows.ConnectorStats{}
			for _, in := range all {
				byName[in.EndpointName] = in
				rate := ""
				if r, ok := rs.add(in.EndpointName, now, records(in)); ok && !in.Finished {
					rate = fmt.Sprintf("%.0f", r)
				}
				lines = append(lines, fmt.Sprintf("%-28s %-9s %12d %10s %7d  %s", in.EndpointName, in.State, records(in), rate, errorCount(in), status(in)))
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
			done := final != nil || (bounded && s.GlobalMetrics.PipelineComplete)
			v.draw(notes, lines, done || stuck)
			if stuck {
				return &stuckError{pipeline: p.Name, failed: failed}
			}
			if done && s.GlobalMetrics.PipelineComplete {
				fmt.Fprintf(out, "pipeline %s: every connector finished (%d input records)\n", p.Name, s.GlobalMetrics.TotalInputRecords)
				return nil
			}
		}
		if final != nil {
			if final.err != nil && ctx.Err() == nil {
				return fmt.Errorf("pipeline %s: workflow ended: %w", p.Name, final.err)
			}
			if ctx.Err() == nil {
				fmt.Fprintf(out, "pipeline %s: workflow completed (%s)\n", p.Name, s.State)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case r := <-ended:
			ended <- r // handled at the top of the loop
		}
	}
}

// view draws the live table: in place on a terminal, each line cut to
// its width so that redrawing never leaves wrapped remains; elsewhere
// (a pipe, a file, CI logs) a snapshot every 5 seconds and the last one.
type view struct {
	out       io.Writer
	fd        int
	tty       bool
	drawn     int
	lastPrint time.Time
}

func newView(out io.Writer) *view {
	v := &view{out: out, fd: -1}
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		v.fd, v.tty = int(f.Fd()), true
	}
	return v
}

func (v *view) draw(notes, lines []string, last bool) {
	if !v.tty {
		for _, l := range notes {
			fmt.Fprintln(v.out, l)
		}
		if last || time.Since(v.lastPrint) >= 5*time.Second {
			fmt.Fprintln(v.out, strings.Join(lines, "\n"))
			v.lastPrint = time.Now()
		}
		return
	}
	width := 0
	if w, _, err := term.GetSize(v.fd); err == nil {
		width = w
	}
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", v.drawn) // back to the table's first line
	}
	for _, l := range notes { // printed once, above the table, wrapped as they are
		fmt.Fprintf(&b, "\r\x1b[2K%s\n", l)
	}
	for _, l := range lines {
		fmt.Fprintf(&b, "\r\x1b[2K%s\n", cut(l, width))
	}
	b.WriteString("\x1b[J") // clear what a longer previous table left below
	fmt.Fprint(v.out, b.String())
	v.drawn = len(lines)
}

// cut shortens s to width-1 runes (the last column stays free, so that a
// terminal never wraps); width 0 is unknown: no cut.
func cut(s string, width int) string {
	if width <= 1 {
		return s
	}
	r := []rune(s)
	if len(r) < width {
		return s
	}
	return string(r[:width-2]) + "…"
}

// records is an input's committed records, an output's delivered ones.
func records(c workflows.ConnectorStats) int64 {
	if c.OutputMetrics != nil {
		return c.OutputMetrics.TransmittedRecords
	}
	return c.Metrics.TotalRecords
}

// errorCount is an input's parse errors, an output's encode errors.
func errorCount(c workflows.ConnectorStats) int64 {
	if c.OutputMetrics != nil {
		return c.OutputMetrics.NumEncodeErrors
	}
	return c.Metrics.NumParseErrors
}

func status(in workflows.ConnectorStats) string {
	switch {
	case in.FatalError != nil:
		return "failed (the error is above the table)"
	case in.Finished && in.OutputMetrics != nil:
		return "delivered everything"
	case in.Finished:
		return "end of input"
	case len(in.WaitingFor) > 0:
		return "waiting for " + strings.Join(in.WaitingFor, ", ")
	case in.OutputMetrics != nil && in.Active:
		return fmt.Sprintf("table version %d, lag %.1fs", in.OutputMetrics.DeliveredVersion, in.OutputMetrics.LagSeconds)
	case in.Metrics.EndOfInput:
		return "end of input, committing"
	}
	return ""
}
