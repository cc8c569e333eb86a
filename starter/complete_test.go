package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
	"go.temporal.io/server/temporaltest"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/builtin"
)

// TestCompletion completes pipeline, table and connector names from a
// real Temporal server and from the table store.
func TestCompletion(t *testing.T) {
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	t.Setenv("TEMPORAL_ADDRESS", ts.GetFrontendHostPort())
	t.Setenv("TEMPORAL_NAMESPACE", ts.GetDefaultNamespace())
	dataDir := t.TempDir()
	w := sluice.NewWorker(c, sluice.WorkerOptions{DataDir: dataDir, Registry: builtin.Registry()})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	p, _, err := sluice.Load("../examples/numbers.sql", builtin.Registry())
	require.NoError(t, err)
	ctx := context.Background()
	_, err = sluice.Start(ctx, c, p, sluice.StartOptions{Paused: true})
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, err := sluice.Stats(ctx, c, p.Name); return err == nil }, 30*time.Second, 100*time.Millisecond)
	// a pipeline with a table in the store and no workflow
	writeTable(t, dataDir, []change{{"a", 1, 1}})

	g := &globals{dataDir: dataDir}
	complete := func(f cobra.CompletionFunc, args ...string) []string {
		got, dir := f(&cobra.Command{}, args, "")
		require.Equal(t, cobra.ShellCompDirectiveNoFileComp, dir)
		return got
	}
	tests := []struct {
		name string
		f    cobra.CompletionFunc
		args []string
		want []string
	}{
		{"pipeline", completePipelineArg(g), nil, []string{"numbers"}},
		{"pipeline, then nothing", completePipelineArg(g), []string{"numbers"}, nil},
		{"connector: pipeline", completeConnectorArgs(g), nil, []string{"numbers"}},
		{"connector: table", completeConnectorArgs(g), []string{"numbers"}, []string{"numbers"}},
		{"connector: connector", completeConnectorArgs(g), []string{"numbers", "numbers"}, []string{"c1", "c2"}},
		{"connector: unknown table", completeConnectorArgs(g), []string{"numbers", "nope"}, nil},
		{"connector: unknown pipeline", completeConnectorArgs(g), []string{"nope"}, nil},
		{"connector: action", completeConnectorArgs(g), []string{"numbers", "numbers", "c1"}, connectorActions},
		{"table: pipeline", completeTableArgs(g), nil, []string{"numbers", "p"}},
		{"table: table from the server", completeTableArgs(g), []string{"numbers"}, []string{"numbers"}},
		{"table: table from the store", completeTableArgs(g), []string{"p"}, []string{"t"}},
		{"table: then nothing", completeTableArgs(g), []string{"p", "t"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, complete(tt.f, tt.args...))
		})
	}

	t.Run("sluice __complete table", func(t *testing.T) {
		out, stderr, err := runSluice(t, "__complete", "table", "--data-dir", dataDir, "")
		require.NoError(t, err)
		require.Equal(t, "numbers\np\n:4\n", out)
		require.NotContains(t, stderr, "rror")
	})
	t.Run("sluice __complete connector and pipeline", func(t *testing.T) {
		for args, want := range map[string]string{
			"connector numbers ":         "numbers\n:4\n",
			"connector numbers numbers ": "c1\nc2\n:4\n",
			"pipeline stats ":            "numbers\n:4\n",
			"pipeline rerun ":            "numbers\n:4\n",
		} {
			out, stderr, err := runSluice(t, append([]string{"__complete"}, strings.Split(args, " ")...)...)
			require.NoError(t, err)
			require.Equal(t, want, out, args)
			require.NotContains(t, stderr, "rror")
		}
	})
	t.Run("no server", func(t *testing.T) {
		t.Setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
		start := time.Now()
		require.Equal(t, []string{"p"}, complete(completeTableArgs(g)))
		require.Empty(t, complete(completeConnectorArgs(g), "numbers"))
		require.Less(t, time.Since(start), 2*completeTimeout)
	})
}
