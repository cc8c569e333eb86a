package tests

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/temporaltest"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
	"github.com/sluicehq/sluice/workflows"
)

// sharedData is ../shared/data, beside the repository.
func sharedData(t testing.TB, name string) string {
	p, err := filepath.Abs(filepath.Join("..", "..", "shared", "data", name))
	require.NoError(t, err)
	_, err = os.Stat(p)
	require.NoError(t, err, "the shared data sets must sit beside the repository (../shared/data)")
	return p
}

// newServer starts a real Temporal server in-process and returns a client.
func newServer(t *testing.T) (*temporaltest.TestServer, client.Client) {
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	return ts, ts.GetDefaultClient()
}

// startWorker runs an in-process Sluice worker until the test ends.
func startWorker(t *testing.T, c client.Client, dataDir string) {
	w := sluice.NewWorker(c, sluice.WorkerOptions{Registry: builtin.Registry(), DataDir: dataDir})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
}

// loadExample loads and validates a file under examples/.
func loadExample(t *testing.T, name string) *pipeline.Pipeline {
	p, _, err := pipeline.LoadFile(filepath.Join("..", "examples", name))
	require.NoError(t, err)
	return p
}

// startPipeline starts the workflow with in.
func startPipeline(t *testing.T, c client.Client, in workflows.Input) client.WorkflowRun {
	run, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: pipeline.WorkflowID(in.Pipeline.Name), TaskQueue: sluice.DefaultTaskQueue,
	}, workflows.WorkflowName, in)
	require.NoError(t, err)
	return run
}

// stats returns the pipeline's stats, with live metrics.
func stats(t *testing.T, c client.Client, name string) workflows.PipelineStats {
	s, err := sluice.Stats(context.Background(), c, name)
	require.NoError(t, err)
	return s
}

func connector(s workflows.PipelineStats, endpoint string) workflows.ConnectorStats {
	for _, in := range s.Inputs {
		if in.EndpointName == endpoint {
			return in
		}
	}
	return workflows.ConnectorStats{}
}

// eventually polls cond every 50ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %s", timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// storedRow is one change in the table store.
type storedRow struct {
	values []any
	weight int64
	commit int64
	conn   string
	time   time.Time
}

// readTable returns every change of a table, in commit order.
func readTable(t *testing.T, dataDir, pipelineName, table string) []storedRow {
	tbl, err := store.Open(context.Background(), store.Location(dataDir, pipelineName, table), store.Options{})
	if errors.Is(err, store.ErrNotFound) {
		return nil // no connector of the table has started
	}
	require.NoError(t, err)
	var out []storedRow
	require.NoError(t, tbl.Changes(context.Background(), 0, -1, func(c store.Change, rec arrow.RecordBatch) error {
		n := int(rec.NumCols()) - 1
		for i := range int(rec.NumRows()) {
			row := make([]any, n)
			for j := range n {
				if !rec.Column(j).IsNull(i) {
					row[j] = rec.Column(j).GetOneForMarshal(i)
				}
			}
			out = append(out, storedRow{row, rec.Column(n).GetOneForMarshal(i).(int64), c.Version, c.Connector, c.Time})
		}
		return nil
	}))
	return out
}

// rowHasher sums 64-bit hashes of rows: an order-independent checksum
// that changes if any row is lost, added twice or altered.
type rowHasher struct {
	seed  maphash.Seed
	sum   uint64
	count int64
}

func newRowHasher() *rowHasher { return &rowHasher{seed: maphash.MakeSeed()} }

// add hashes row i of rec's first n columns, by their text values.
func (h *rowHasher) add(rec arrow.RecordBatch, n int) {
	cols := make([]arrow.Array, n)
	for j := range n {
		cols[j] = rec.Column(j)
	}
	var buf []byte
	for i := range int(rec.NumRows()) {
		buf = buf[:0]
		for _, c := range cols {
			s := c.ValueStr(i)
			buf = binary.AppendUvarint(buf, uint64(len(s)))
			buf = append(buf, s...)
		}
		h.sum += maphash.Bytes(h.seed, buf)
		h.count++
	}
}

// buildBinary builds a main package of this module into dir.
func buildBinary(t *testing.T, pkg, dir string) string {
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, "github.com/sluicehq/sluice/"+pkg)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Run(), "go build %s", pkg)
	return out
}

// workerProcess starts the worker binary as a separate process against
// ts, its stderr appended to logs, so a test can SIGKILL it.
func workerProcess(t *testing.T, bin, dataDir string, ts *temporaltest.TestServer, logs *strings.Builder) *exec.Cmd {
	return workerProcessAt(t, bin, dataDir, ts.GetFrontendHostPort(), ts.GetDefaultNamespace(), logs)
}

// workerProcessAt starts the worker binary against the server at addr,
// with env added to its environment; t's cleanup kills it.
func workerProcessAt(t *testing.T, bin, dataDir, addr, namespace string, logs *strings.Builder, env ...string) *exec.Cmd {
	cmd := exec.Command(bin, "--data-dir", dataDir)
	cmd.Env = append(append(os.Environ(), "TEMPORAL_ADDRESS="+addr, "TEMPORAL_NAMESPACE="+namespace), env...)
	cmd.Stderr = logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// inputRecords returns a function that reads the records committed by
// pipeline name's first input (0 while its stats cannot be read).
func inputRecords(c client.Client, name string) func() int64 {
	return func() int64 {
		st, err := sluice.Stats(context.Background(), c, name)
		if err != nil || len(st.Inputs) == 0 {
			return 0
		}
		return st.Inputs[0].Metrics.TotalRecords
	}
}

// killDuringInput runs pipeline name's workers as processes of bin and
// SIGKILLs one each time its first input has committed the next count of
// at, checking with busy that the input is still under way, then starts
// another. It returns the last, running worker.
func killDuringInput(t *testing.T, ts *temporaltest.TestServer, bin, dataDir, name string, at []int64, busy func() bool, logs *strings.Builder) *exec.Cmd {
	committed := inputRecords(ts.GetDefaultClient(), name)
	proc := workerProcess(t, bin, dataDir, ts, logs)
	for _, n := range at {
		eventually(t, 3*time.Minute, fmt.Sprintf("%d records committed", n), func() bool { return committed() >= n })
		require.NoError(t, proc.Process.Signal(syscall.SIGKILL))
		_ = proc.Wait()
		require.True(t, busy(), "the input must still be under way when the worker is killed")
		proc = workerProcess(t, bin, dataDir, ts, logs)
	}
	return proc
}

// commitFiles counts a table's commit files.
func commitFiles(dataDir, p, table string) int {
	es, _ := os.ReadDir(filepath.Join(dataDir, p, table))
	n := 0
	for _, e := range es {
		if strings.HasSuffix(e.Name(), ".parquet") && !strings.HasPrefix(e.Name(), ".") {
			n++
		}
	}
	return n
}

// crashRun runs the pipeline's workers as separate processes of bin and
// SIGKILLs the worker each time the table reaches the next count of
// killAt commits, checking it is still below total (ingestion not yet
// done), then starts a new one. It returns the pipeline's final stats.
func crashRun(t *testing.T, ts *temporaltest.TestServer, run client.WorkflowRun, bin, dataDir, p, table string, killAt []int, total int) workflows.PipelineStats {
	var logs strings.Builder
	proc := workerProcess(t, bin, dataDir, ts, &logs)
	for _, at := range killAt {
		deadline := time.Now().Add(2 * time.Minute)
		for commitFiles(dataDir, p, table) < at {
			if time.Now().After(deadline) {
				t.Fatalf("%s has %d commits, want %d; stats: %+v; worker log:\n%s", table, commitFiles(dataDir, p, table), at, stats(t, ts.GetDefaultClient(), p), logs.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
		require.NoError(t, proc.Process.Signal(syscall.SIGKILL))
		_ = proc.Wait()
		require.Less(t, commitFiles(dataDir, p, table), total, "ingestion must still be running when killed")
		proc = workerProcess(t, bin, dataDir, ts, &logs)
	}
	defer func() { _ = proc.Process.Kill(); _ = proc.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var final workflows.PipelineStats
	require.NoError(t, run.Get(ctx, &final), logs.String())
	return final
}

// switchOrder returns the last commit holding rows of connector history
// and the first commit holding rows of any other connector: a handover
// is right when the first is less than the second.
func switchOrder(rows []storedRow, history string) (lastHistory, firstLive int64) {
	lastHistory, firstLive = -1, 1<<62
	for _, r := range rows {
		if r.conn == history {
			lastHistory = max(lastHistory, r.commit)
		} else {
			firstLive = min(firstLive, r.commit)
		}
	}
	return lastHistory, firstLive
}

// duckdb runs one query with DuckDB (tests/duckdb, from npm), a Parquet
// reader independent of arrow-go, and returns its rows with values as
// JSON gives them (BIGINT and DECIMAL as strings). It installs the npm
// package on first use. Without node and npm the test fails in CI and is
// skipped elsewhere.
func duckdb(t *testing.T, query string) []map[string]any {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is needed to check the table store with DuckDB", tool)
			}
			t.Skipf("%s is not installed: DuckDB checks need Node.js", tool)
		}
	}
	duckdbOnce.Do(func() {
		if _, err := os.Stat(filepath.Join("duckdb", "node_modules", "@duckdb", "node-api")); err == nil {
			return
		}
		cmd := exec.Command("npm", "install", "--no-audit", "--no-fund", "--no-package-lock")
		cmd.Dir = "duckdb"
		out, err := cmd.CombinedOutput()
		duckdbErr = err
		if err != nil {
			duckdbErr = fmt.Errorf("npm install in tests/duckdb: %w\n%s", err, out)
		}
	})
	require.NoError(t, duckdbErr)
	out, err := exec.Command("node", filepath.Join("duckdb", "query.mjs"), query).Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		t.Fatalf("duckdb %q: %s", query, exit.Stderr)
	}
	require.NoError(t, err)
	var rows []map[string]any
	require.NoError(t, json.Unmarshal(out, &rows), string(out))
	return rows
}

var (
	duckdbOnce sync.Once
	duckdbErr  error
)

// finish waits up to two minutes for the pipeline workflow to complete
// and returns its final stats.
func finish(t *testing.T, run client.WorkflowRun) workflows.PipelineStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var final workflows.PipelineStats
	require.NoError(t, run.Get(ctx, &final))
	return final
}

// duckdbDeltaLog is a DuckDB query over a Delta table's JSON commits, read
// with DuckDB's own JSON reader (not Sluice's log code): one row per add
// or remove action with its version, path, dataChange and the committing
// connector (commitInfo.operationParameters.connector).
func duckdbDeltaLog(dir string) string {
	return fmt.Sprintf(`(with log as (
		select regexp_extract(filename, '(\d{20})\.json$', 1)::bigint as version, add, remove, commitInfo
		from read_ndjson('%s/_delta_log/*.json', filename = true, columns = {
			add: 'STRUCT(path VARCHAR, "dataChange" BOOLEAN)', remove: 'STRUCT(path VARCHAR, "dataChange" BOOLEAN)',
			"commitInfo": 'STRUCT("operationParameters" STRUCT(connector VARCHAR))'})),
	conn as (select version, commitInfo.operationParameters.connector as connector from log where commitInfo is not null)
	select l.version, coalesce(add.path, remove.path) as path, add is not null as is_add,
		coalesce(add.dataChange, remove.dataChange) as data_change, c.connector
	from log l left join conn c using (version) where add is not null or remove is not null)`, dir)
}

// duckdbDeltaFiles replays a Delta table's log up to version (-1: all)
// with DuckDB's JSON reader and returns read_parquet over the active data
// files: adds minus removes, by path.
func duckdbDeltaFiles(t *testing.T, dir string, version int64) string {
	if version < 0 {
		version = 1 << 62
	}
	rows := duckdb(t, fmt.Sprintf(`select path from %[1]s where is_add and version <= %[2]d
		except select path from %[1]s where not is_add and version <= %[2]d order by path`, duckdbDeltaLog(dir), version))
	require.NotEmpty(t, rows, "the log names active files")
	var files []string
	for _, r := range rows {
		files = append(files, fmt.Sprintf("'%s/%s'", dir, r["path"]))
	}
	return "read_parquet([" + strings.Join(files, ", ") + "])"
}
