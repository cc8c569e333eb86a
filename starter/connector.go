package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/workflows"
)

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
