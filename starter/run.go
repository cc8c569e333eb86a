package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/devserver"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/workflows"
)

func newRunCmd(g *globals) *cobra.Command {
	var dev, paused bool
	var uiPort int
	cmd := &cobra.Command{
		Use:   "run [--dev] FILE",
		Short: "Start a pipeline and follow its progress",
		Long: `Start a pipeline and follow its progress on stderr: per connector its state,
records, records/s and end of input. It exits 0 once every input connector has
finished when all of them are bounded; otherwise it follows until interrupted.

--dev runs an embedded Temporal server (SQLite in .sluice/temporal.db, frontend
127.0.0.1:7233), its Web UI (http://127.0.0.1:8233) and a worker in this process.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, notices, err := sluice.Load(args[0])
			printNotices(notices)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
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
				w := sluice.NewWorker(c, sluice.WorkerOptions{DataDir: g.dataDir, Store: g.storeOptions(), TaskQueue: g.taskQueue})
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
			return follow(ctx, c, p, os.Stderr)
		},
	}
	cmd.Flags().BoolVar(&dev, "dev", false, "run an embedded Temporal server, its Web UI and a worker in this process")
	cmd.Flags().BoolVar(&paused, "paused", false, "start the pipeline Paused")
	cmd.Flags().IntVar(&uiPort, "ui-port", 8233, "the Web UI's port with --dev; -1 disables it")
	return cmd
}

// follow renders progress until every connector of an all-bounded pipeline
// has finished, the workflow closes, or ctx ends.
func follow(ctx context.Context, c client.Client, p *pipeline.Pipeline, out io.Writer) error {
	reg := builtin.Registry()
	bounded := true
	for _, t := range p.Tables {
		schema, _ := t.Schema()
		for i := range t.Connectors {
			bounded = bounded && reg.Bounded(&t.Connectors[i], schema)
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
			lines := []string{fmt.Sprintf("%-28s %-8s %12s %10s  %s", "CONNECTOR", "STATE", "RECORDS", "REC/S", "STATUS")}
			for _, in := range s.Inputs {
				rate := 0.0
				if dt > 0 {
					rate = float64(in.Metrics.TotalRecords-prev[in.EndpointName]) / dt
				}
				prev[in.EndpointName] = in.Metrics.TotalRecords
				lines = append(lines, fmt.Sprintf("%-28s %-8s %12d %10.0f  %s", in.EndpointName, in.State, in.Metrics.TotalRecords, rate, status(in)))
			}
			prevTime = now
			done := bounded && s.GlobalMetrics.PipelineComplete
			if tty {
				if drawn > 0 {
					fmt.Fprintf(out, "\x1b[%dA", drawn)
				}
				for _, l := range lines {
					fmt.Fprintf(out, "\x1b[2K%s\n", l)
				}
				drawn = len(lines)
			} else if done || time.Since(lastPrint) >= 5*time.Second {
				fmt.Fprintln(out, strings.Join(lines, "\n"))
				lastPrint = time.Now()
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
			fmt.Fprintf(out, "\ninterrupted; pipeline %s's workflow keeps its state: run the same command to go on\n", p.Name)
			return nil
		case <-tick.C:
		}
	}
}

func status(in workflows.ConnectorStats) string {
	switch {
	case in.FatalError != nil:
		return "failed: " + *in.FatalError
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
