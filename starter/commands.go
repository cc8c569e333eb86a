package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/connectors/s3"
	"github.com/sluicehq/sluice/store"
	"github.com/sluicehq/sluice/workflows"
)

type globals struct {
	dataDir   string
	taskQueue string
	s3        s3.Settings
}

// storeOptions are the table store's options from the flags.
func (g *globals) storeOptions() store.Options { return store.Options{S3: g.s3} }

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "sluice",
		Short:         "Orchestrate data-ingestion connectors on Temporal",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.dataDir, "data-dir", sluice.DefaultDataDir, "the table store's root: a directory or s3://bucket/prefix")
	root.PersistentFlags().StringVar(&g.s3.EndpointURL, "s3-endpoint-url", "", "an S3-compatible store for an s3:// --data-dir (path-style requests); credentials from the standard AWS chain")
	root.PersistentFlags().StringVar(&g.s3.Region, "s3-region", "", "the AWS region of an s3:// --data-dir (default: the AWS chain's, else us-east-1)")
	root.PersistentFlags().StringVar(&g.taskQueue, "task-queue", sluice.DefaultTaskQueue, "the Temporal task queue of Sluice's workers")
	root.AddCommand(newRunCmd(g), newPipelineCmd(g), newConnectorCmd(g), newTableCmd(g))
	return root
}

// dial connects with the standard Temporal environment, failing fast when
// the server is unreachable.
func dial(ctx context.Context) (client.Client, error) {
	opts, err := sluice.ClientOptions()
	if err != nil {
		return nil, err
	}
	opts.Logger = silent{}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		addr := opts.HostPort
		if addr == "" {
			addr = client.DefaultHostPort
		}
		return nil, fmt.Errorf("cannot reach the Temporal server at %s (set TEMPORAL_ADDRESS, or use run --dev): %v", addr, firstLine(err))
	}
	return c, nil
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newPipelineCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "pipeline", Short: "Start, control and inspect pipelines"}
	var paused bool
	start := &cobra.Command{
		Use:   "start FILE",
		Short: "Validate a pipeline file and start its workflow",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, notices, err := sluice.Load(args[0], builtin.Registry())
			printNotices(notices)
			if err != nil {
				return err
			}
			c, err := dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			run, err := sluice.Start(cmd.Context(), c, p, sluice.StartOptions{TaskQueue: g.taskQueue, Paused: paused})
			if errors.Is(err, sluice.ErrAlreadyRunning) {
				return fmt.Errorf("pipeline %s is already running (workflow %s)", p.Name, run.GetID())
			}
			if err != nil {
				return err
			}
			fmt.Printf("started pipeline %s: workflow %s, run %s\n", p.Name, run.GetID(), run.GetRunID())
			return nil
		},
	}
	start.Flags().BoolVar(&paused, "paused", false, "start the pipeline Paused")
	control := func(use, short, update string) *cobra.Command {
		return &cobra.Command{
			Use: use + " NAME", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := dial(cmd.Context())
				if err != nil {
					return err
				}
				defer c.Close()
				if err := sluice.Command(cmd.Context(), c, args[0], update, nil); err != nil {
					return err
				}
				fmt.Printf("pipeline %s: %s\n", args[0], update)
				return nil
			},
		}
	}
	stats := &cobra.Command{
		Use: "stats NAME", Short: "Print a pipeline's stats as JSON", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			s, err := sluice.Stats(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			return printJSON(s)
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List pipelines (their workflows)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.ListWorkflow(cmd.Context(), &workflowservice.ListWorkflowExecutionsRequest{Query: "WorkflowType = '" + workflows.WorkflowName + "'"})
			if err != nil {
				return err
			}
			fmt.Printf("%-24s %-12s %s\n", "NAME", "STATUS", "STARTED")
			for _, e := range resp.Executions {
				name := strings.TrimPrefix(e.Execution.WorkflowId, "pipeline-")
				status := strings.TrimPrefix(e.Status.String(), "WORKFLOW_EXECUTION_STATUS_")
				if e.Status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
					if s, err := sluice.Stats(cmd.Context(), c, name); err == nil {
						status = s.State
					}
				}
				fmt.Printf("%-24s %-12s %s\n", name, status, e.StartTime.AsTime().Local().Format(time.DateTime))
			}
			return nil
		},
	}
	cmd.AddCommand(start,
		control("pause", "Pause every connector of a pipeline", workflows.PipelinePause),
		control("resume", "Resume a paused pipeline", workflows.PipelineStart),
		control("stop", "Pause everything, then complete the pipeline's workflow", workflows.PipelineStop),
		stats, list)
	return cmd
}

func newConnectorCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "connector PIPELINE TABLE CONNECTOR start|pause|stats",
		Short: "Start, pause or inspect one connector",
		Args:  cobra.ExactArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, table, conn, action := args[0], args[1], args[2], args[3]
			c, err := dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			switch action {
			case "start", "pause":
				name := workflows.ConnectorStart
				if action == "pause" {
					name = workflows.ConnectorPause
				}
				if err := sluice.Command(cmd.Context(), c, p, name, &workflows.ConnectorRef{Table: table, Connector: conn}); err != nil {
					return err
				}
				fmt.Printf("connector %s.%s: %s\n", table, conn, action)
				return nil
			case "stats":
				s, err := sluice.ConnectorStats(cmd.Context(), c, p, table, conn)
				if err != nil {
					return err
				}
				return printJSON(s)
			}
			return fmt.Errorf("unknown action %q: want start, pause or stats", action)
		},
	}
}

func printNotices(notices []string) {
	for _, n := range notices {
		fmt.Fprintln(os.Stderr, "note:", n)
	}
}

type silent struct{}

func (silent) Debug(string, ...any) {}
func (silent) Info(string, ...any)  {}
func (silent) Warn(string, ...any)  {}
func (silent) Error(string, ...any) {}
