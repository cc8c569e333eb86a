package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/workflows"
)

// replayer returns Temporal's workflow replayer with the Pipeline workflow.
func replayer() worker.WorkflowReplayer {
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(workflows.Pipeline, workflow.RegisterOptions{Name: workflows.WorkflowName})
	return r
}

// history returns a workflow's whole history as the JSON that
// `temporal workflow show --output json` prints and the replayer reads.
func history(t *testing.T, c client.Client, workflowID, runID string) []byte {
	it := c.GetWorkflowHistory(context.Background(), workflowID, runID, false, 0)
	h := &historypb.History{}
	for it.HasNext() {
		e, err := it.Next()
		require.NoError(t, err)
		h.Events = append(h.Events, e)
	}
	b, err := protojson.Marshal(h)
	require.NoError(t, err)
	return b
}

// TestReplay guards the Pipeline workflow's determinism with Temporal's
// replayer, as CONVENTIONS.md asks. It runs a pipeline through the paths a
// user drives (a connector created paused and started by an update, a
// Delta snapshot whose start the workflow resolves in a local activity, a
// start_after that waits for it, stats queries, pipeline.stop) and replays
// that history against today's code; then it replays every history saved
// in testdata/histories by earlier versions, so a change to running
// workflows that is not behind workflow.GetVersion fails here. Set
// SLUICE_SAVE_HISTORY=<name> to save the fresh history as testdata/histories/<name>.json.
func TestReplay(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	p := flightsPipeline(t, "replay", fmt.Sprintf(`      - name: later
        paused: true
        transport: {name: datagen, config: {plan: [{limit: 300}]}}
      - name: history
        labels: [flights.history]
        transport: {name: delta_table_input, config: {uri: %q, mode: snapshot}}
      - name: live
        start_after: [flights.history]
        transport: {name: datagen, config: {plan: [{limit: 200}]}}
`, sharedData(t, "delta/delta-0.8.0")))
	p.Tables[0].Columns[0].Name = "value" // delta-0.8.0's column
	p.StopAtEndOfInput = false
	run := startPipeline(t, c, workflows.Input{Pipeline: *p})
	eventually(t, time.Minute, "history and live finished", func() bool {
		s := stats(t, c, "replay")
		return connector(s, "flights.history").Finished && connector(s, "flights.live").Finished
	})
	require.NoError(t, sluice.Command(context.Background(), c, "replay", workflows.ConnectorStart, &workflows.ConnectorRef{Table: "flights", Connector: "later"}))
	eventually(t, time.Minute, "later finished", func() bool { return connector(stats(t, c, "replay"), "flights.later").Finished })
	_, rerr := sluice.Rerun(context.Background(), c, "replay", "flights.history")
	require.NoError(t, rerr)
	eventually(t, time.Minute, "the re-run history finished", func() bool {
		s := connector(stats(t, c, "replay"), "flights.history")
		return s.Finished && s.Metrics.TotalRecords == 4
	})
	require.NoError(t, sluice.Command(context.Background(), c, "replay", workflows.PipelineStop, nil))
	require.NoError(t, run.Get(context.Background(), nil))
	require.Equal(t, int64(4+200+300), stats(t, c, "replay").GlobalMetrics.TotalInputRecords)

	fresh := history(t, c, run.GetID(), run.GetRunID())
	h, err := client.HistoryFromJSON(bytes.NewReader(fresh), client.HistoryJSONOptions{})
	require.NoError(t, err)
	require.NoError(t, replayer().ReplayWorkflowHistory(nil, h), "today's history replays")
	if name := os.Getenv("SLUICE_SAVE_HISTORY"); name != "" {
		require.NoError(t, os.WriteFile(filepath.Join("testdata", "histories", name+".json"), fresh, 0o644))
	}

	saved, err := filepath.Glob(filepath.Join("testdata", "histories", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, saved, "testdata/histories holds the histories of earlier versions")
	for _, f := range saved {
		t.Run(filepath.Base(f), func(t *testing.T) {
			require.NoError(t, replayer().ReplayWorkflowHistoryFromJSONFile(nil, f))
		})
	}
}
