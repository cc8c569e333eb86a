package tests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/workflows"
)

// slowOpen is datagen whose Open takes open_ms, as an S3 listing or a
// Delta log replay of a large table does; it records the attempt number
// of every Open.
type slowOpen struct {
	connectors.Source
	delay    time.Duration
	attempts *[]int32
	mu       *sync.Mutex
}

func (s *slowOpen) Open(ctx context.Context, cp connectors.Checkpoint) error {
	s.mu.Lock()
	*s.attempts = append(*s.attempts, activity.GetInfo(ctx).Attempt)
	s.mu.Unlock()
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Source.Open(ctx, cp)
}

func (s *slowOpen) Bounded() bool { return true }

// TestSlowOpenHeartbeats: a connector whose Open takes three heartbeat
// timeouts is not taken for dead: the activity heartbeats while it opens,
// so Temporal never starts a second attempt beside the first, and the
// connector finishes with every record once and no fatal_error.
func TestSlowOpenHeartbeats(t *testing.T) {
	var mu sync.Mutex
	var attempts []int32
	reg := builtin.Registry()
	require.NoError(t, reg.Register("slow_open", func(p connectors.Params) (connectors.Source, error) {
		var cfg struct {
			OpenMs int             `json:"open_ms"`
			Plan   json.RawMessage `json:"plan"`
		}
		if err := json.Unmarshal(p.Config, &cfg); err != nil {
			return nil, err
		}
		p.Config = json.RawMessage(`{"plan": ` + string(cfg.Plan) + `}`)
		src, err := reg.New("datagen", p)
		if err != nil {
			return nil, err
		}
		return &slowOpen{Source: src, delay: time.Duration(cfg.OpenMs) * time.Millisecond, attempts: &attempts, mu: &mu}, nil
	}))
	_, c := newServer(t)
	dataDir := t.TempDir()
	w := sluice.NewWorker(c, sluice.WorkerOptions{DataDir: dataDir, Registry: reg})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	p := &pipeline.Pipeline{Name: "slowopen", StopAtEndOfInput: true, Tables: []pipeline.Table{{
		Name:    "events",
		Columns: []pipeline.Column{{Name: "id", Type: "BIGINT"}},
		Connectors: []pipeline.Connector{{Name: "gen", Transport: pipeline.Transport{Name: "slow_open", Config: json.RawMessage(
			`{"open_ms": 6000, "plan": [{"limit": 1000, "fields": {"id": {"strategy": "increment"}}}]}`)}}},
	}}}
	require.NoError(t, pipeline.Validate(p, reg))
	run := startPipeline(t, c, workflows.Input{Pipeline: *p, HeartbeatTimeoutSeconds: 2})
	final := finish(t, run)
	require.Nil(t, connector(final, "events.gen").FatalError)
	mu.Lock()
	require.Equal(t, []int32{1}, attempts, "one attempt: a slow open is not a dead worker")
	mu.Unlock()
	requireEachIDOnce(t, dataDir, "slowopen", 1000)
}

// TestUnsafeNamesRefused: a workflow started without the loader (the
// SDK, the Web UI, the temporal CLI) with a name that would leave the
// data directory fails at once, naming the field, and writes nothing.
func TestUnsafeNamesRefused(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	for _, tc := range []struct{ pipeline, table, connector, want string }{
		{"../escape", "events", "gen", `name: "../escape"`},
		{"ok", "../../escape", "gen", `tables[0].name: "../../escape"`},
		{"ok2", "events", "a/../../b", `tables[0].connectors[0].name: "a/../../b"`},
	} {
		p := pipeline.Pipeline{Name: tc.pipeline, Tables: []pipeline.Table{{
			Name: tc.table, Columns: []pipeline.Column{{Name: "id", Type: "BIGINT"}},
			Connectors: []pipeline.Connector{{Name: tc.connector, Transport: pipeline.Transport{Name: "datagen", Config: json.RawMessage(`{"plan": [{"limit": 10}]}`)}}},
		}}}
		run, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
			ID: "unsafe-" + tc.table + tc.connector, TaskQueue: sluice.DefaultTaskQueue,
		}, workflows.WorkflowName, workflows.Input{Pipeline: p})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = run.Get(ctx, nil)
		cancel()
		require.ErrorContains(t, err, "invalid pipeline")
		require.ErrorContains(t, err, tc.want)
	}
	for _, dir := range []string{dataDir, filepath.Dir(dataDir)} {
		escaped, err := filepath.Glob(filepath.Join(dir, "*escape*"))
		require.NoError(t, err)
		require.Empty(t, escaped, "nothing may be written outside the data directory")
	}
	entries, err := os.ReadDir(dataDir)
	require.NoError(t, err)
	require.Empty(t, entries, "no table of a refused pipeline is created")
}

// TestRunExitCodes drives `sluice run` as a user would: a pipeline with
// a failed connector and nothing else left to do exits 1 at once,
// printing the failure once; an endless pipeline interrupted with
// SIGINT exits 130, with SIGTERM 143.
func TestRunExitCodes(t *testing.T) {
	ts, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	bin := buildBinary(t, "starter", t.TempDir())
	dir := t.TempDir()
	run := func(file string) *exec.Cmd {
		cmd := exec.Command(bin, "--data-dir", dataDir, "run", file)
		cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+ts.GetFrontendHostPort(), "TEMPORAL_NAMESPACE="+ts.GetDefaultNamespace())
		return cmd
	}
	failing := filepath.Join(dir, "failing.yaml")
	require.NoError(t, os.WriteFile(failing, []byte(`
name: failing
tables:
  - name: t
    columns: [{name: a, type: BIGINT}]
    connectors:
      - {name: gone, labels: [gone], transport: {name: file_input, config: {path: /nonexistent/in.json}}, format: {name: json}}
      - {name: after, start_after: [gone], transport: {name: datagen, config: {plan: [{limit: 5}]}}}
      - {name: ok, transport: {name: datagen, config: {plan: [{limit: 5}]}}}
`), 0o644))
	out, err := run(failing).CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, string(out))
	require.Equal(t, 1, exit.ExitCode(), string(out))
	require.Equal(t, 1, strings.Count(string(out), "/nonexistent/in.json"), "the failure is printed once:\n%s", out)
	require.Contains(t, string(out), "connector t.gone failed")
	require.Contains(t, string(out), "no connector can make progress")

	endless := filepath.Join(dir, "endless.yaml")
	require.NoError(t, os.WriteFile(endless, []byte(`
name: endless
tables:
  - name: t
    columns: [{name: a, type: BIGINT}]
    connectors:
      - {name: gen, transport: {name: datagen, config: {plan: [{rate: 100}]}}}
`), 0o644))
	for sig, code := range map[syscall.Signal]int{syscall.SIGINT: 130, syscall.SIGTERM: 143} {
		cmd := run(endless)
		var buf lockedBuffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		require.NoError(t, cmd.Start())
		eventually(t, 30*time.Second, "sluice run follows the pipeline", func() bool {
			s, err := sluice.Stats(context.Background(), c, "endless")
			return err == nil && connector(s, "t.gen").Metrics.TotalRecords > 0 && strings.Contains(buf.String(), "CONNECTOR")
		})
		require.NoError(t, cmd.Process.Signal(sig))
		err := cmd.Wait()
		require.ErrorAs(t, err, &exit, buf.String())
		require.Equal(t, code, exit.ExitCode(), "%s: %s", sig, buf.String())
		require.Contains(t, buf.String(), "interrupted; pipeline endless's workflow keeps its state")
	}
	// Exiting left the pipeline running: stop it.
	require.NoError(t, sluice.Command(context.Background(), c, "endless", workflows.PipelineStop, nil))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, c.GetWorkflow(ctx, pipeline.WorkflowID("endless"), "").Get(ctx, nil))
}

// lockedBuffer is an io.Writer a process writes to while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
