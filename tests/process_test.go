package tests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/workflows"
)

// startPipelineOn starts the workflow on c.
func startPipelineOn(t *testing.T, c client.Client, in workflows.Input) client.WorkflowRun {
	run, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: pipeline.WorkflowID(in.Pipeline.Name), TaskQueue: sluice.DefaultTaskQueue,
	}, workflows.WorkflowName, in)
	require.NoError(t, err)
	return run
}

// activityWorkerPID returns the process id of the worker running the
// connector's activity (from its identity, "pid@host@..."), or 0.
func activityWorkerPID(t *testing.T, c client.Client, workflowID, endpoint string) int {
	d, err := c.DescribeWorkflowExecution(context.Background(), workflowID, "")
	if err != nil {
		return 0
	}
	for _, pa := range d.PendingActivities {
		if strings.HasPrefix(pa.ActivityId, endpoint+"-") && pa.LastWorkerIdentity != "" {
			pid, _ := strconv.Atoi(strings.SplitN(pa.LastWorkerIdentity, "@", 2)[0])
			return pid
		}
	}
	return 0
}

// TestServerRestartsAndFrozenWorker runs a pipeline on two worker
// processes against the temporal CLI's dev server, itself a process with
// a SQLite file: the server is SIGKILLed twice during ingestion and
// restarted on the same database; then the worker running the connector
// is frozen with SIGSTOP for longer than the heartbeat timeout, the
// other worker takes over, and the frozen one is woken with SIGCONT.
// Every record arrives exactly once, the pipeline completes, and no
// connector failed.
func TestServerRestartsAndFrozenWorker(t *testing.T) {
	srv := startDevServer(t)
	dataDir := t.TempDir()
	bin := buildBinary(t, "worker", t.TempDir())
	var logs [2]strings.Builder
	for i := range logs {
		workerProcessAt(t, bin, dataDir, srv.Address(), "default", &logs[i])
	}
	const n, hb = 60_000, 5
	p := idsPipeline(t, "restarts", n, 2000, 200)
	run := startPipelineOn(t, srv.client(), workflows.Input{Pipeline: *p, HeartbeatTimeoutSeconds: hb})
	rows := func() int { return len(readTable(t, dataDir, "restarts", "events")) }

	kills := 0
	for _, at := range []int{n / 6, n / 3} {
		eventually(t, 2*time.Minute, fmt.Sprintf("%d records before the server is killed", at), func() bool { return rows() >= at })
		srv.kill()
		kills++
		time.Sleep(2 * time.Second) // workers meet a dead server: polls and heartbeats fail
		srv.start()
	}
	require.Less(t, rows(), n, "ingestion must still be running after the restarts")

	c := srv.client()
	var pid int
	eventually(t, time.Minute, "the connector runs on a worker", func() bool {
		pid = activityWorkerPID(t, c, "pipeline-restarts", "events.gen")
		return pid != 0
	})
	frozen, err := os.FindProcess(pid)
	require.NoError(t, err)
	require.NoError(t, frozen.Signal(syscall.SIGSTOP))
	before := rows()
	time.Sleep(3 * hb * time.Second)
	eventually(t, time.Minute, "the other worker takes over", func() bool { return rows() > before+2000 })
	require.NoError(t, frozen.Signal(syscall.SIGCONT))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var final workflows.PipelineStats
	require.NoError(t, c.GetWorkflow(ctx, run.GetID(), "").Get(ctx, &final), "%s\n%s", logs[0].String(), logs[1].String())
	st := connector(final, "events.gen")
	require.Nil(t, st.FatalError)
	require.Equal(t, int64(n), st.Metrics.TotalRecords)
	requireEachIDOnce(t, dataDir, "restarts", n)
	t.Logf("records %d, server kills %d, restarts %d, worker frozen for %ds (heartbeat timeout %ds), duplicates 0", n, kills, kills, 3*hb, hb)
}

// TestSecretsStayOutOfHistory runs connectors whose configs reference
// secrets with ${env:NAME} and fail, on a worker process against the
// dev server: the resolved values appear nowhere, not in the connectors'
// fatal_error, the worker's log, `temporal workflow show -o json` nor
// the server's history database; a variable outside the worker's
// allow-list is refused by name, its value unread.
func TestSecretsStayOutOfHistory(t *testing.T) {
	srv := startDevServer(t)
	dataDir := t.TempDir()
	bin := buildBinary(t, "worker", t.TempDir())
	secret := func() string { b := make([]byte, 12); _, _ = rand.Read(b); return "s3cr3t" + hex.EncodeToString(b) }
	token, dir, private := secret(), secret(), secret()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such feed", http.StatusNotFound)
	}))
	defer web.Close()
	var logs strings.Builder
	workerProcessAt(t, bin, dataDir, srv.Address(), "default", &logs,
		"SLUICE_TOKEN="+token, "SLUICE_DIR="+dir, "WORKER_PRIVATE="+private)

	p, _, err := pipeline.Load([]byte(`
name: secrets
tables:
  - name: t
    columns: [{name: a, type: BIGINT}]
    connectors:
      - name: web
        transport: {name: url_input, config: {path: "`+web.URL+`/feed?token=${env:SLUICE_TOKEN}"}}
        format: {name: json}
      - name: file
        transport: {name: file_input, config: {path: "/nonexistent/${env:SLUICE_DIR}/in.json"}}
        format: {name: json}
      - name: private
        transport: {name: file_input, config: {path: "/tmp/${env:WORKER_PRIVATE}.json"}}
        format: {name: json}
`), ".yaml", "")
	require.NoError(t, err)
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	c := srv.client()
	startPipelineOn(t, c, workflows.Input{Pipeline: *p})
	var st workflows.PipelineStats
	eventually(t, time.Minute, "every connector fails", func() bool {
		st, err = sluice.Stats(context.Background(), c, "secrets")
		if err != nil {
			return false
		}
		for _, in := range st.Inputs {
			if in.FatalError == nil {
				return false
			}
		}
		return true
	})
	require.Contains(t, *connector(st, "t.private").FatalError, "WORKER_PRIVATE", "the refused variable is named")
	require.Contains(t, *connector(st, "t.private").FatalError, "allow-list")
	require.Contains(t, *connector(st, "t.file").FatalError, "[REDACTED]", "the error still says where")
	require.NoError(t, sluice.Command(context.Background(), c, "secrets", workflows.PipelineStop, nil))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, c.GetWorkflow(ctx, pipeline.WorkflowID("secrets"), "").Get(ctx, nil))

	show, err := exec.Command(srv.bin, "workflow", "show", "--address", srv.Address(), "-w", pipeline.WorkflowID("secrets"), "-o", "json").CombinedOutput()
	require.NoError(t, err, string(show))
	require.Contains(t, string(show), "REDACTED", "the history holds the redacted errors")
	stats, _ := json.Marshal(st)
	srv.kill() // the database, flushed
	places := map[string]string{"stats": string(stats), "worker log": logs.String(), "temporal workflow show": string(show)}
	dbFiles, _ := filepath.Glob(srv.db + "*")
	require.NotEmpty(t, dbFiles)
	for _, f := range dbFiles {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		places[f] = string(b)
	}
	for where, text := range places {
		for name, v := range map[string]string{"SLUICE_TOKEN": token, "SLUICE_DIR": dir, "WORKER_PRIVATE": private} {
			require.NotContains(t, text, v, "%s's value in the %s", name, where)
		}
	}
}
