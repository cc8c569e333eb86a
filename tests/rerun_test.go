package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/workflows"
)

// TestRerunLabelledBackfill re-runs a labelled backfill inside a
// long-running pipeline, by hand (sluice pipeline rerun) and on a
// schedule (sluice schedule create --pipeline --rerun, then trigger):
// each re-run reads seattle-weather.csv whole again and appends it, while
// the live connector that started after the first backfill keeps
// running. A re-run of a running connector, or of a label nobody
// carries, is refused.
func TestRerunLabelledBackfill(t *testing.T) {
	ts, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	ctx := context.Background()
	sluiceBin := buildBinary(t, "starter", t.TempDir())
	cli := func(args ...string) (string, error) {
		cmd := exec.Command(sluiceBin, args...)
		cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+ts.GetFrontendHostPort(), "TEMPORAL_NAMESPACE="+ts.GetDefaultNamespace())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	const name = "weatherrerun"
	file := filepath.Join(t.TempDir(), name+".json")
	require.NoError(t, os.WriteFile(file, []byte(fmt.Sprintf(`{
  "name": %q,
  "tables": [{
    "name": "weather",
    "columns": %s,
    "connectors": [
      {"name": "csv", "labels": ["backfill"], "transport": {"name": "file_input", "config": {"path": %q}},
       "format": {"name": "csv", "config": {"headers": true}}},
      {"name": "live", "labels": ["live"], "start_after": "backfill", "transport": {"name": "datagen", "config": {"plan": [{"rate": 20}]}}}]
  }]
}`, name, weatherColumns, sharedData(t, "seattle-weather.csv"))), 0o644))
	p, _, err := sluice.Load(file, builtin.Registry())
	require.NoError(t, err)
	_, err = sluice.Start(ctx, c, p, sluice.StartOptions{})
	require.NoError(t, err)

	csvRows := func() int {
		n := 0
		for _, r := range readTable(t, dataDir, name, "weather") {
			if strings.HasPrefix(r.conn, "csv") {
				n++
			}
		}
		return n
	}
	backfillDone := func(runs int) func() bool {
		return func() bool {
			s := connector(stats(t, c, name), "weather.csv")
			return s.State == workflows.StateFinished && csvRows() == runs*weatherRows
		}
	}
	liveRuns := func() bool { return connector(stats(t, c, name), "weather.live").State == workflows.StateRunning }
	eventually(t, time.Minute, "the backfill finishes and live starts after it", func() bool { return backfillDone(1)() && liveRuns() })

	// By hand: the backfill reads the file whole again; live keeps running.
	out, err := cli("pipeline", "rerun", name, "backfill")
	require.NoError(t, err, out)
	var st workflows.PipelineStats
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	eventually(t, time.Minute, "the re-run backfill finishes", backfillDone(2))
	require.True(t, liveRuns(), "live is not touched by the re-run")

	// Refusals change nothing.
	out, err = cli("pipeline", "rerun", name, "live")
	require.Error(t, err)
	require.Contains(t, out, "weather.live is Running: pause it first")
	out, err = cli("pipeline", "rerun", name, "nolabel")
	require.Error(t, err)
	require.Contains(t, out, `no input connector of pipeline weatherrerun carries it`)
	out, err = cli("schedule", "create", "bad", "--pipeline", name, "--rerun", "nolabel", "--every", "1h")
	require.Error(t, err)
	require.Contains(t, out, `carries label "nolabel"`)

	// On a schedule: each run of the Rerun workflow re-runs the backfill.
	out, err = cli("schedule", "create", "hourly-backfill", "--pipeline", name, "--rerun", "backfill", "--every", "1h", "--paused")
	require.NoError(t, err, out)
	require.Contains(t, out, "re-runs label backfill of pipeline "+name)
	out, err = cli("schedule", "trigger", "hourly-backfill")
	require.NoError(t, err, out)
	var run sluice.ScheduleRun
	eventually(t, time.Minute, "the schedule's Rerun workflow completes", func() bool {
		s, err := sluice.DescribeSchedule(ctx, c, "hourly-backfill")
		require.NoError(t, err)
		if len(s.RecentRuns) == 0 {
			return false
		}
		run = s.RecentRuns[0]
		require.NotEqual(t, "Failed", run.Status)
		return run.Status == "Completed"
	})
	require.True(t, strings.HasPrefix(run.WorkflowID, "rerun-"+name+"-backfill"), run.WorkflowID)
	eventually(t, time.Minute, "the scheduled re-run finishes", backfillDone(3))
	require.True(t, liveRuns())
	desc, err := sluice.DescribeSchedule(ctx, c, "hourly-backfill")
	require.NoError(t, err)
	require.Equal(t, name, desc.Pipeline)
	require.Equal(t, "backfill", desc.Rerun)
	eventually(t, 30*time.Second, "schedule list shows the rerun schedule", func() bool {
		out, err := cli("schedule", "list")
		return err == nil && strings.Contains(out, name+" (rerun backfill)")
	})
	out, err = cli("schedule", "delete", "hourly-backfill")
	require.NoError(t, err, out)
	require.NoError(t, sluice.Command(ctx, c, name, workflows.PipelineStop, nil))
}
