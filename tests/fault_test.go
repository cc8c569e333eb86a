package tests

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/workflows"
)

// frozenRun is a pipeline whose first worker, a separate process, was
// frozen with SIGSTOP while ingesting, a live in-process worker beside it.
type frozenRun struct {
	c       client.Client
	dataDir string
	run     client.WorkflowRun
	proc    *exec.Cmd
	logs    *strings.Builder
}

// freezeWorker starts the ids pipeline name (n records at 2,000/s,
// heartbeat timeout hb seconds) on a worker process, freezes it once more
// than after records are committed, and starts a live worker.
func freezeWorker(t *testing.T, name string, n, hb, after int) frozenRun {
	ts, c := newServer(t)
	f := frozenRun{c: c, dataDir: t.TempDir(), logs: &strings.Builder{}}
	bin := buildBinary(t, "worker", t.TempDir())
	f.proc = workerProcess(t, bin, f.dataDir, ts, f.logs)
	t.Cleanup(func() { _ = f.proc.Process.Kill(); _ = f.proc.Wait() })
	p := idsPipeline(t, name, n, 2000, 100)
	f.run = startPipeline(t, c, workflows.Input{Pipeline: *p, HeartbeatTimeoutSeconds: hb})
	eventually(t, 30*time.Second, "the first commits", func() bool { return len(readTable(t, f.dataDir, name, "events")) > after })
	require.NoError(t, f.proc.Process.Signal(syscall.SIGSTOP))
	startWorker(t, c, f.dataDir)
	return f
}

// TestPauseWhileWorkerDead pauses a connector whose worker process is
// frozen (SIGSTOP). Temporal does not retry an activity whose
// cancellation was requested, so it ends in a heartbeat timeout: that is
// the pause, not a fatal_error. Started again on a live worker, the
// connector resumes from the table and every record arrives once.
func TestPauseWhileWorkerDead(t *testing.T) {
	// The pause must reach the server before the frozen attempt's
	// heartbeat times out (else Temporal retries it on the live worker):
	// the workflow task waits out the frozen worker's sticky queue (5 s).
	const n = 40_000
	f := freezeWorker(t, "deadpause", n, 10, 1000)
	c, dataDir, run, frozen := f.c, f.dataDir, f.run, f.proc
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
