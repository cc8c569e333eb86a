package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/builtin/checks"
	"github.com/sluicehq/sluice/workflows"
)

func newPipelineCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "pipeline", Short: "Start, control and inspect pipelines"}
	var paused bool
	start := &cobra.Command{
		Use:   "start FILE",
		Short: "Validate a pipeline file and start its workflow",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, notices, err := sluice.Load(args[0], checks.Registry())
			printNotices(notices)
			if err != nil {
				return err
			}
			c, err := dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			run, err := sluice.Start(cmd.Context(), c, p, sluice.StartOptions{TaskQueue: g.taskQueue, Paused: paused, Namespace: namespace()})
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
			ValidArgsFunction: completePipelineArg(g),
			RunE: func(cmd *cobra.Command, args []string) error {
				return withClient(cmd, func(ctx context.Context, c client.Client) error {
					var s workflows.PipelineStats
					if err := sluice.Update(ctx, c, args[0], update, nil, &s); err != nil {
						return err
					}
					fmt.Printf("pipeline %s: %s\n", args[0], s.State)
					return nil
				})
			},
		}
	}
	stats := &cobra.Command{
		Use: "stats NAME", Short: "Print a pipeline's stats as JSON", Args: cobra.ExactArgs(1),
		ValidArgsFunction: completePipelineArg(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c client.Client) error {
				s, err := sluice.Stats(ctx, c, args[0])
				if err != nil {
					return err
				}
				return printJSON(s)
			})
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
	clear := &cobra.Command{
		Use:   "clear NAME",
		Short: "Delete a stopped pipeline's tables and state (Feldera's clear storage)",
		Long: `Delete the tables of a pipeline whose workflow is not running: their data,
their Delta logs and every connector's checkpoint in them, so that the next
run starts from the beginning of every input. The positions outputs keep in
their destinations (a _sluice_offsets row, a Kafka transaction, a Delta txn)
are not touched. Stop the pipeline first (sluice pipeline stop NAME).`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completePipelineArg(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c client.Client) error {
				dropped, err := sluice.Clear(ctx, c, args[0], g.dataDir, g.storeOptions())
				for _, loc := range dropped {
					fmt.Printf("deleted table %s\n", loc)
				}
				if err != nil {
					return err
				}
				fmt.Printf("pipeline %s cleared: its next run starts from the beginning of every input\n", args[0])
				return nil
			})
		},
	}
	rerun := &cobra.Command{
		Use:   "rerun NAME LABEL",
		Short: "Re-run a pipeline's input connectors labelled LABEL from the beginning of their input",
		Long: `Reset every input connector labelled LABEL of the running pipeline NAME to the
beginning of its input and start it (the update pipeline.rerun): a labelled
backfill runs again inside a long-running pipeline, appending its input to the
table again under a new writer; the rows it committed before stay. Refused,
changing nothing, while one of them runs. Prints the pipeline's stats as JSON
once they started. sluice schedule create NAME --pipeline P --rerun LABEL
does this on a schedule.`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completePipelineArg(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c client.Client) error {
				s, err := sluice.Rerun(ctx, c, args[0], args[1])
				if err != nil {
					return err
				}
				return printJSON(s)
			})
		},
	}
	cmd.AddCommand(start, clear, rerun,
		control("pause", "Pause every connector of a pipeline", workflows.PipelinePause),
		control("resume", "Resume a paused pipeline", workflows.PipelineStart),
		control("stop", "Pause everything, then complete the pipeline's workflow", workflows.PipelineStop),
		stats, list)
	return cmd
}
