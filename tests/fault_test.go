package tests

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/workflows"
)

// TestPauseWhileWorkerDead pauses a connector whose worker process is
// frozen (SIGSTOP). Temporal does not retry an activity whose
// cancellation was requested, so it ends in a heartbeat timeout: that is
// the pause, not a fatal_error. Started again on a live worker, the
// connector resumes from the table and every record arrives once.
func TestPauseWhileWorkerDead(t *testing.T) {
	ts, c := newServer(t)
	dataDir := t.TempDir()
	bin := buildBinary(t, "worker", t.TempDir())
	var logs strings.Builder
	frozen := workerProcess(t, bin, dataDir, ts, &logs)
	defer func() { _ = frozen.Process.Kill(); _ = frozen.Wait() }()

	const n = 40_000
	p := idsPipeline(t, "deadpause", n, 2000, 100)
	// The pause must reach the server before the frozen attempt's
	// heartbeat times out (else Temporal retries it on the live worker):
	// the workflow task waits out the frozen worker's sticky queue (5 s).
	run := startPipeline(t, c, workflows.Input{Pipeline: *p, HeartbeatTimeoutSeconds: 10})
	eventually(t, 30*time.Second, "the first commits", func() bool { return len(readTable(t, dataDir, "deadpause", "events")) > 1000 })
	require.NoError(t, frozen.Process.Signal(syscall.SIGSTOP))
	startWorker(t, c, dataDir) // runs the workflow tasks meanwhile
	ref := &workflows.ConnectorRef{Table: "events", Connector: "gen"}
	require.NoError(t, sluice.Command(context.Background(), c, "deadpause", workflows.ConnectorPause, ref))
	eventually(t, 60*time.Second, "the pause ends", func() bool { return !activityRunning(t, c, "pipeline-deadpause", "events.gen") })
	st := connector(stats(t, c, "deadpause"), "events.gen")
	require.Nil(t, st.FatalError, "a pause that reached a dead worker is a pause")
	require.Equal(t, "Paused", st.State)

	require.NoError(t, frozen.Process.Signal(syscall.SIGKILL))
	require.NoError(t, sluice.Command(context.Background(), c, "deadpause", workflows.ConnectorStart, ref))
	final := finish(t, run)
	require.Nil(t, connector(final, "events.gen").FatalError)
	requireEachIDOnce(t, dataDir, "deadpause", n)
}
