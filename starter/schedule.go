package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/builtin/checks"
	"github.com/sluicehq/sluice/pipeline"
)

// newScheduleCmd is the `sluice schedule` command group: scheduled
// backfills with Temporal Schedules.
func newScheduleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Scheduled backfills with Temporal Schedules",
		Long: `A schedule starts a pipeline as a bounded backfill at times given by --every or
--cron: each run is a Pipeline workflow (ID pipeline-<name>-<scheduled time>)
that completes once its inputs reached end of input. Connector configs may
name the run's window: ${schedule:start_time}, ${schedule:start_time|2006-01-02}
(a Go time layout, UTC), ${schedule:end_time} (start + --every).`,
	}
	cmd.AddCommand(newScheduleCreateCmd(g), newScheduleListCmd(), newScheduleDescribeCmd(),
		newSchedulePauseCmd(), newScheduleUnpauseCmd(), newScheduleTriggerCmd(), newScheduleBackfillCmd(), newScheduleDeleteCmd())
	return cmd
}

func newScheduleCreateCmd(g *globals) *cobra.Command {
	var o sluice.ScheduleOptions
	var overlap, rerunPipeline, rerunLabel string
	cmd := &cobra.Command{
		Use:   "create NAME (FILE | --pipeline P --rerun LABEL) (--cron EXPR | --every DURATION)",
		Short: "Create a schedule that runs a bounded pipeline as a backfill, or re-runs a labelled backfill",
		Long: `Create the Temporal Schedule NAME. At each of its times it starts FILE's pipeline
with stop_at_end_of_input, so the run completes once every input reached end
of input; every input must be bounded. --every 24h runs at 00:00 UTC (times
are multiples of the interval since the Unix epoch); --cron takes Temporal's
cron syntax ("0 3 * * *", "@daily", "CRON_TZ=Europe/Paris 0 3 * * *").
The pipeline is validated with its placeholders expanded for the next run.

With --pipeline P --rerun LABEL instead of FILE, each of its times re-runs
the input connectors labelled LABEL of the long-running pipeline P, as
sluice pipeline rerun P LABEL does: each is reset to the beginning of its
input and started, and appends its input to the table again. A run fails,
changing nothing, while the previous re-run still runs.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if rerun := rerunPipeline != "" || rerunLabel != ""; rerun != (len(args) == 1) {
				return fmt.Errorf("schedule create: give FILE, or --pipeline P and --rerun LABEL")
			}
			if len(args) == 1 && (rerunPipeline == "" || rerunLabel == "") {
				return fmt.Errorf("schedule create: --pipeline and --rerun go together")
			}
			o.ID, o.TaskQueue, o.Registry, o.Namespace = args[0], g.taskQueue, checks.Registry(), namespace()
			var err error
			if o.Overlap, err = sluice.ParseOverlap(overlap); err != nil {
				return err
			}
			if o.Cron == "" && o.Every == 0 {
				return fmt.Errorf("schedule create: give --cron EXPR or --every DURATION")
			}
			if o.Cron != "" && o.Every != 0 {
				return fmt.Errorf("schedule create: --cron and --every exclude each other")
			}
			if len(args) == 1 {
				return withClient(cmd, func(ctx context.Context, c client.Client) error {
					if _, err := sluice.CreateRerunSchedule(ctx, c, rerunPipeline, rerunLabel, o); err != nil {
						return err
					}
					s, err := sluice.DescribeSchedule(ctx, c, o.ID)
					if err != nil {
						return err
					}
					fmt.Printf("created schedule %s: re-runs label %s of pipeline %s, %s, overlap %s%s\n", o.ID, rerunLabel, rerunPipeline, s.Spec, s.Overlap, map[bool]string{true: ", paused"}[s.Paused])
					printNextRuns(s, 3)
					return nil
				})
			}
			p, notices, err := sluice.LoadScheduled(args[1], o.Registry, sluice.SampleWindow(o, time.Now()))
			printNotices(notices)
			if err != nil {
				return err
			}
			return withClient(cmd, func(ctx context.Context, c client.Client) error {
				if _, err := sluice.CreateSchedule(ctx, c, p, o); err != nil {
					return err
				}
				s, err := sluice.DescribeSchedule(ctx, c, o.ID)
				if err != nil {
					return err
				}
				fmt.Printf("created schedule %s: pipeline %s, %s, overlap %s%s\n", o.ID, p.Name, s.Spec, s.Overlap, map[bool]string{true: ", paused"}[s.Paused])
				printNextRuns(s, 3)
				if len(s.NextRuns) > 0 && pipeline.HasSchedulePlaceholders(p) {
					printExpanded(p, sluice.RunWindow(s.NextRuns[0], o.Every))
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&o.Cron, "cron", "", `a cron expression: "0 3 * * *", "@daily", "CRON_TZ=Europe/Paris 0 3 * * *"`)
	cmd.Flags().DurationVar(&o.Every, "every", 0, "the interval between runs (24h, 1h, 15m); also each run's window length")
	cmd.Flags().StringVar(&overlap, "overlap", "skip", "when a run is due while the last one runs: skip, buffer_one, buffer_all, cancel_other, terminate_other or allow_all")
	cmd.Flags().BoolVar(&o.Paused, "paused", false, "create the schedule paused")
	cmd.Flags().StringVar(&o.Note, "note", "", "a note shown by describe and the Temporal Web UI")
	cmd.Flags().StringVar(&rerunPipeline, "pipeline", "", "with --rerun: the long-running pipeline whose labelled connectors each run re-runs")
	cmd.Flags().StringVar(&rerunLabel, "rerun", "", "with --pipeline: the label of the input connectors each run re-runs (instead of FILE)")
	return cmd
}

func printNextRuns(s *sluice.ScheduleStatus, n int) {
	if len(s.NextRuns) == 0 {
		return
	}
	var times []string
	for i, t := range s.NextRuns {
		if i == n {
			break
		}
		times = append(times, t.UTC().Format(time.RFC3339))
	}
	fmt.Printf("next runs: %s\n", strings.Join(times, ", "))
}

// printExpanded shows the connector configs the run of window w reads.
func printExpanded(p *pipeline.Pipeline, w pipeline.Window) {
	q := *p
	if err := pipeline.ExpandSchedule(&q, w); err != nil {
		fmt.Fprintf(os.Stderr, "note: the run at %s cannot expand its placeholders: %v\n", w.Start.Format(time.RFC3339), err)
		return
	}
	fmt.Printf("the run at %s reads:\n", w.Start.Format(time.RFC3339))
	for ti, t := range p.Tables {
		for ci, c := range t.Connectors {
			one := pipeline.Pipeline{Tables: []pipeline.Table{{Connectors: []pipeline.Connector{c}}}}
			if !pipeline.HasSchedulePlaceholders(&one) {
				continue
			}
			e := q.Tables[ti].Connectors[ci]
			fmt.Printf("  %s transport.config: %s\n", pipeline.Endpoint(t.Name, c.Name), e.Transport.Config)
			if e.Format != nil && len(e.Format.Config) > 0 {
				fmt.Printf("  %s format.config: %s\n", pipeline.Endpoint(t.Name, c.Name), e.Format.Config)
			}
		}
	}
}

func newScheduleListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use: "list", Short: "List Sluice's schedules", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c client.Client) error {
				list, err := sluice.ListSchedules(ctx, c)
				if err != nil {
					return err
				}
				if asJSON {
					if list == nil {
						list = []sluice.ScheduleSummary{}
					}
					return printJSON(list)
				}
				fmt.Printf("%-24s %-20s %-8s %-22s %-22s %s\n", "NAME", "PIPELINE", "STATE", "NEXT RUN", "LAST RUN", "SPEC")
				for _, s := range list {
					state := "active"
					if s.Paused {
						state = "paused"
					}
					name := s.Pipeline
					if s.Rerun != "" {
						name += " (rerun " + s.Rerun + ")"
					}
					fmt.Printf("%-24s %-20s %-8s %-22s %-22s %s\n", s.ID, name, state, timeOrDash(s.NextRun), timeOrDash(s.LastRun), s.Spec)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func newScheduleDescribeCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use: "describe NAME", Short: "Show a schedule: spec, overlap, paused, next runs, recent runs", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c client.Client) error {
				s, err := sluice.DescribeSchedule(ctx, c, args[0])
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(s)
				}
				state := "active"
				if s.Paused {
					state = "paused"
				}
				fmt.Printf("schedule:    %s\npipeline:    %s\n", s.ID, s.Pipeline)
				if s.Rerun != "" {
					fmt.Printf("re-runs:     the input connectors labelled %s\n", s.Rerun)
				}
				fmt.Printf("spec:        %s\noverlap:     %s\nstate:       %s\n", s.Spec, s.Overlap, state)
				if s.Note != "" {
					fmt.Printf("note:        %s\n", s.Note)
				}
				fmt.Printf("task queue:  %s\nworkflow ID: %s-<scheduled time>\nruns:        %d\n", s.TaskQueue, s.WorkflowID, s.Actions)
				if len(s.NextRuns) > 0 {
					fmt.Println("next runs:")
					for _, t := range s.NextRuns {
						fmt.Printf("  %s\n", t.UTC().Format(time.RFC3339))
					}
				}
				if len(s.RecentRuns) > 0 {
					fmt.Println("recent runs:")
					for _, r := range s.RecentRuns {
						fmt.Printf("  %s  %-10s %s\n", r.ScheduledTime.Format(time.RFC3339), r.Status, r.WorkflowID)
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newSchedulePauseCmd() *cobra.Command {
	var note string
	cmd := &cobra.Command{
		Use: "pause NAME", Short: "Pause a schedule (trigger and backfill still run)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c client.Client) error {
				if err := sluice.PauseSchedule(ctx, c, args[0], note); err != nil {
					return err
				}
				fmt.Printf("schedule %s: paused\n", args[0])
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&note, "note", "", "why it is paused")
	return cmd
}

func newScheduleUnpauseCmd() *cobra.Command {
	var note string
	cmd := &cobra.Command{
		Use: "unpause NAME", Short: "Unpause a schedule", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c client.Client) error {
				if err := sluice.UnpauseSchedule(ctx, c, args[0], note); err != nil {
					return err
				}
				fmt.Printf("schedule %s: unpaused\n", args[0])
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&note, "note", "", "a note")
	return cmd
}

func newScheduleTriggerCmd() *cobra.Command {
	return &cobra.Command{
		Use: "trigger NAME", Short: "Start a run now (its window starts now)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c client.Client) error {
				before, err := sluice.DescribeSchedule(ctx, c, args[0])
				if err != nil {
					return err
				}
				if err := sluice.TriggerSchedule(ctx, c, args[0]); err != nil {
					return err
				}
				// The schedule starts the run asynchronously: show it if it
				// appears within a few seconds.
				deadline := time.Now().Add(5 * time.Second)
				for time.Now().Before(deadline) {
					s, err := sluice.DescribeSchedule(ctx, c, args[0])
					if err == nil && s.Actions > before.Actions && len(s.RecentRuns) > 0 {
						fmt.Printf("schedule %s: triggered: workflow %s\n", args[0], s.RecentRuns[len(s.RecentRuns)-1].WorkflowID)
						return nil
					}
					time.Sleep(200 * time.Millisecond)
				}
				fmt.Printf("schedule %s: triggered (the run shows in sluice schedule describe %s; with overlap skip it is skipped while another run is running)\n", args[0], args[0])
				return nil
			})
		},
	}
}

func newScheduleBackfillCmd() *cobra.Command {
	var start, end, overlap string
	cmd := &cobra.Command{
		Use:   "backfill NAME --start RFC3339 --end RFC3339",
		Short: "Run the schedule's times between --start and --end now",
		Long: `Start the runs the schedule would have started at each of its times from --start
to --end, both included, as if that time passed now: with --every 24h,
--start 2026-01-01T00:00:00Z --end 2026-01-03T00:00:00Z runs the windows of
January 1, 2 and 3. --overlap defaults to buffer_all: one run after the other.
A window run again starts from the beginning of its inputs as the same
backfill, so its rows are not ingested twice.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := time.Parse(time.RFC3339, start)
			if err != nil {
				return fmt.Errorf("--start: want an RFC 3339 time such as 2026-01-01T00:00:00Z: %v", err)
			}
			e, err := time.Parse(time.RFC3339, end)
			if err != nil {
				return fmt.Errorf("--end: want an RFC 3339 time such as 2026-01-02T00:00:00Z: %v", err)
			}
			pol, err := sluice.ParseOverlap(overlap)
			if err != nil {
				return err
			}
			return withClient(cmd, func(ctx context.Context, c client.Client) error {
				if err := sluice.BackfillSchedule(ctx, c, args[0], s, e, pol); err != nil {
					return err
				}
				fmt.Printf("schedule %s: backfilling %s to %s (overlap %s)\n", args[0], s.UTC().Format(time.RFC3339), e.UTC().Format(time.RFC3339), sluice.OverlapName(pol))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&start, "start", "", "the first time, RFC 3339 (required)")
	cmd.Flags().StringVar(&end, "end", "", "the last time, RFC 3339, included (required)")
	cmd.Flags().StringVar(&overlap, "overlap", "buffer_all", "skip, buffer_one, buffer_all, cancel_other, terminate_other or allow_all")
	_ = cmd.MarkFlagRequired("start")
	_ = cmd.MarkFlagRequired("end")
	return cmd
}

func newScheduleDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use: "delete NAME", Short: "Delete a schedule (its running runs go on)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(ctx context.Context, c client.Client) error {
				if err := sluice.DeleteSchedule(ctx, c, args[0]); err != nil {
					return err
				}
				fmt.Printf("schedule %s: deleted\n", args[0])
				return nil
			})
		},
	}
}
