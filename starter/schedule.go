package main

import "github.com/spf13/cobra"

// newScheduleCmd is the `sluice schedule` command group (being built).
func newScheduleCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "schedule", Short: "Scheduled backfills with Temporal Schedules"}
}
