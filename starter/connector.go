package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/workflows"
)

const connectorLong = `Control or inspect one connector of a running pipeline. Each action prints
the connector's stats as JSON once it took effect (start: its activity was
scheduled; pause: its activity committed what it read and returned).

  start                    start it (also a failed one, or one waiting for start_after)
  pause                    pause it
  stats                    print its stats (Feldera's shape)
  checkpoint               print its checkpoint: where it resumes
  set-checkpoint JSON      resume from this checkpoint instead (an input, not running)
  reset                    start over from the beginning of its input (an input, not running)
  update-config FILE|JSON  replace its config (not running), validated as a pipeline
                           file is; keeps its checkpoint unless --reset

set-checkpoint, reset and update-config need the connector not running:
Paused (it or the pipeline), waiting for start_after, finished or failed.
set-checkpoint and reset leave it Paused and start a new writer in the table
(its rows so far stay; counters start from zero): start it to ingest. After
Kafka Connect's offsets API (KIP-875).`

func newConnectorCmd(g *globals) *cobra.Command {
	var reset bool
	cmd := &cobra.Command{
		Use:   "connector PIPELINE TABLE CONNECTOR start|pause|stats|checkpoint|set-checkpoint JSON|reset|update-config FILE|JSON",
		Short: "Start, pause, inspect, reposition or reconfigure one connector",
		Long:  connectorLong,
		Args:  cobra.RangeArgs(4, 5),
		// PIPELINE TABLE CONNECTOR ACTION from the server; then a file for update-config
		ValidArgsFunction: completeConnectorArgs(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, table, conn, action := args[0], args[1], args[2], args[3]
			arg := ""
			needsArg := action == "set-checkpoint" || action == "update-config"
			switch {
			case needsArg && len(args) != 5:
				return fmt.Errorf("connector %s: want one more argument", action)
			case !needsArg && len(args) != 4:
				return fmt.Errorf("connector %s: takes no argument after the action", action)
			case needsArg:
				arg = args[4]
			}
			ref := workflows.ConnectorRef{Table: table, Connector: conn}
			var update string
			var input any = ref
			switch action {
			case "start":
				update = workflows.ConnectorStart
			case "pause":
				update = workflows.ConnectorPause
			case "reset":
				update = workflows.ConnectorReset
			case "set-checkpoint":
				if !json.Valid([]byte(arg)) {
					return fmt.Errorf("set-checkpoint: %q is not JSON (print the current one with: sluice connector %s %s %s checkpoint)", arg, p, table, conn)
				}
				update = workflows.ConnectorSetCheckpoint
				input = workflows.CheckpointInput{Table: table, Connector: conn, Checkpoint: json.RawMessage(arg)}
			case "update-config":
				cfg, err := readConnector(arg)
				if err != nil {
					return err
				}
				update = workflows.ConnectorUpdateConfig
				input = workflows.ConfigInput{Table: table, Connector: conn, Config: cfg, Reset: reset}
			case "stats", "checkpoint":
			default:
				return fmt.Errorf("unknown action %q: want start, pause, stats, checkpoint, set-checkpoint, reset or update-config", action)
			}
			c, err := dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			if update == "" {
				s, err := sluice.ConnectorStats(cmd.Context(), c, p, table, conn)
				if err != nil {
					return err
				}
				if action == "checkpoint" {
					if len(s.Checkpoint) == 0 {
						fmt.Println("null")
						return nil
					}
					var out bytes.Buffer
					if err := json.Indent(&out, s.Checkpoint, "", "  "); err != nil {
						return err
					}
					fmt.Println(out.String())
					return nil
				}
				return printJSON(s)
			}
			var s workflows.ConnectorStats
			if err := sluice.Update(cmd.Context(), c, p, update, input, &s); err != nil {
				return err
			}
			return printJSON(s)
		},
	}
	cmd.Flags().BoolVar(&reset, "reset", false, "with update-config: start over from the beginning of the input instead of keeping the checkpoint")
	return cmd
}

// readConnector reads a connector's config, Feldera's connector JSON (or
// YAML), from a file or from the argument itself when it starts with '{'.
func readConnector(arg string) (pipeline.Connector, error) {
	var cfg pipeline.Connector
	data := []byte(arg)
	if !strings.HasPrefix(strings.TrimSpace(arg), "{") {
		b, err := os.ReadFile(arg)
		if err != nil {
			return cfg, fmt.Errorf("update-config: %w", err)
		}
		data = b
	}
	j, err := yaml.YAMLToJSON(data) // JSON is YAML
	if err != nil {
		return cfg, fmt.Errorf("update-config: parse: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("update-config: parse connector: %w", err)
	}
	return cfg, nil
}
