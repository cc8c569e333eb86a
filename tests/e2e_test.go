package tests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
	"github.com/sluicehq/sluice/workflows"
)

// values returns the ingested values of a one-int-column table by connector.
func values(t *testing.T, dataDir, p, table string) map[string][]int64 {
	out := map[string][]int64{}
	for _, r := range readTable(t, dataDir, p, table) {
		out[r.conn] = append(out[r.conn], int64(r.values[0].(int32)))
	}
	return out
}

func activityRunning(t *testing.T, c client.Client, workflowID, endpoint string) bool {
	d, err := c.DescribeWorkflowExecution(context.Background(), workflowID, "")
	require.NoError(t, err)
	for _, pa := range d.PendingActivities {
		if strings.HasPrefix(pa.ActivityId, endpoint+"-") {
			return true
		}
	}
	return false
}

// TestNumbersExample runs Feldera's orchestration example (c1 paused, c2
// running) and drives it with the sluice command line, as a user would.
func TestNumbersExample(t *testing.T) {
	ts, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	sluiceBin := buildBinary(t, "starter", t.TempDir())
	cli := func(args ...string) (string, error) {
		cmd := exec.Command(sluiceBin, append([]string{"--data-dir", dataDir}, args...)...)
		cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+ts.GetFrontendHostPort(), "TEMPORAL_NAMESPACE="+ts.GetDefaultNamespace())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	// examples/numbers.sql, with a limit of ten numbers per connector.
	sqlFile := filepath.Join(t.TempDir(), "numbers.sql")
	sql, err := os.ReadFile(filepath.Join("testdata", "numbers-bounded.sql"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(sqlFile, sql, 0o644))
	out, err := cli("pipeline", "start", sqlFile)
	require.NoError(t, err, out)
	const wf = "pipeline-numbers"

	// c2 runs at once, c1 is paused: only c2's range (10..19) arrives.
	eventually(t, 30*time.Second, "c2 ingests", func() bool { return len(values(t, dataDir, "numbers", "numbers")["c2"]) >= 3 })
	require.Empty(t, values(t, dataDir, "numbers", "numbers")["c1"], "c1 is paused: nothing of its range may be ingested")

	// Pause c2; once its activity has committed and returned, nothing more of c2 arrives.
	out, err = cli("connector", "numbers", "numbers", "c2", "pause")
	require.NoError(t, err, out)
	eventually(t, 10*time.Second, "c2's activity returns", func() bool { return !activityRunning(t, c, wf, "numbers.c2") })
	paused := values(t, dataDir, "numbers", "numbers")["c2"]
	require.Less(t, len(paused), 10)

	// Start c1: its whole range 0..9 arrives exactly once, and c2 stays paused.
	out, err = cli("connector", "numbers", "numbers", "c1", "start")
	require.NoError(t, err, out)
	eventually(t, 30*time.Second, "c1 finishes", func() bool {
		out, err := cli("connector", "numbers", "numbers", "c1", "stats")
		require.NoError(t, err, out)
		jq := exec.Command("jq", "-e", ".metrics.end_of_input == true and .metrics.buffered_records == 0")
		jq.Stdin = strings.NewReader(out)
		return jq.Run() == nil
	})
	got := values(t, dataDir, "numbers", "numbers")
	require.Equal(t, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, got["c1"])
	require.Equal(t, paused, got["c2"], "none of c2's records may arrive after its pause")

	// Unknown names are clear errors with a non-zero exit.
	out, err = cli("connector", "numbers", "numbers", "nope", "start")
	require.Error(t, err)
	require.Contains(t, out, `table numbers has no connector "nope"`)
	out, err = cli("pipeline", "stats", "nosuch")
	require.Error(t, err)
	require.Contains(t, out, "no such pipeline")

	// Resume c2 with a plain signal, JSON input, as `temporal workflow signal
	// --name connector.start --input '{"table":"numbers","connector":"c2"}'`
	// sends it: it continues from its checkpoint, every value exactly once.
	require.NoError(t, c.SignalWorkflow(context.Background(), wf, "", workflows.ConnectorStart,
		json.RawMessage(`{"table":"numbers","connector":"c2"}`)))
	eventually(t, 30*time.Second, "c2 finishes", func() bool { return connector(stats(t, c, "numbers"), "numbers.c2").Finished })
	c2 := values(t, dataDir, "numbers", "numbers")["c2"]
	sort.Slice(c2, func(i, j int) bool { return c2[i] < c2[j] })
	require.Equal(t, []int64{10, 11, 12, 13, 14, 15, 16, 17, 18, 19}, c2)

	// The table command shows the 20 current rows.
	out, err = cli("table", "numbers", "numbers", "--format", "csv")
	require.NoError(t, err, out)
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 21, out)
}

// TestFlightsBackfillThenLive runs examples/flights.yaml: 3,000,000 real
// flights from Parquet, then live generated flights with start_after.
func TestFlightsBackfillThenLive(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	p := loadExample(t, "flights.yaml")
	p.Tables[0].Connectors[0].Transport.Config = []byte(`{"path": "` + sharedData(t, "flights-3m.parquet") + `"}`)
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	p.StopAtEndOfInput = true
	run := startPipeline(t, c, workflows.Input{Pipeline: *p})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var final workflows.PipelineStats
	require.NoError(t, run.Get(ctx, &final))
	require.True(t, final.GlobalMetrics.PipelineComplete)

	rows := readTable(t, dataDir, "flights", "flights")
	var backfill, live int
	var lastBackfill, firstLive int64 = 0, 1 << 62
	var lastBackfillTime, firstLiveTime time.Time
	for _, r := range rows {
		require.Equal(t, int64(1), r.weight)
		switch r.conn {
		case "backfill":
			backfill++
			lastBackfill, lastBackfillTime = max(lastBackfill, r.commit), r.time
		case "live":
			live++
			if r.commit < firstLive {
				firstLive, firstLiveTime = r.commit, r.time
			}
		}
	}
	require.Equal(t, 3_000_000, backfill)
	require.Equal(t, 20_000, live)
	require.Less(t, lastBackfill, firstLive, "no live record may be committed before the last backfill record")
	require.False(t, firstLiveTime.Before(lastBackfillTime))
	require.Equal(t, int64(3_020_000), final.GlobalMetrics.TotalInputRecords)
}

// TestCrashDuringBackfill kills a separate worker process with SIGKILL three
// times during the flights backfill and checks that the table store ends
// with every one of the 3,000,000 flights exactly once.
func TestCrashDuringBackfill(t *testing.T) {
	ts, c := newServer(t)
	dataDir := t.TempDir()
	workerBin := buildBinary(t, "worker", t.TempDir())
	src := sharedData(t, "flights-3m.parquet")
	p := loadExample(t, "flights.yaml")
	p.Tables[0].Connectors = p.Tables[0].Connectors[:1]
	p.Tables[0].Connectors[0].Transport.Config = []byte(`{"path": "` + src + `"}`)
	p.Tables[0].Connectors[0].MaxBatchSize = 10_000
	p.Tables[0].Connectors[0].MaxQueuedRecords = 40_000 // commits of at most 40,000 rows: at least 75 of them
	p.StopAtEndOfInput = true
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))

	run := startPipeline(t, c, workflows.Input{Pipeline: *p, HeartbeatTimeoutSeconds: 2})
	final := crashRun(t, ts, run, workerBin, dataDir, "flights", "flights", []int{5, 20, 40}, 75)
	ctx := context.Background()

	// Every flight, exactly once: same count and checksum as the source.
	want := newRowHasher()
	got := &rowHasher{seed: want.seed}
	f, err := file.OpenParquetFile(src, false)
	require.NoError(t, err)
	defer f.Close()
	fr, err := pqarrow.NewFileReader(f, pqarrow.ArrowReadProperties{BatchSize: 1 << 16}, memory.DefaultAllocator)
	require.NoError(t, err)
	rr, err := fr.GetRecordReader(ctx, nil, nil)
	require.NoError(t, err)
	for rr.Next() {
		want.add(rr.RecordBatch(), 5)
	}
	rr.Release()
	tbl := readTableBatches(t, dataDir, "flights", "flights", func(rec arrow.RecordBatch) { got.add(rec, 5) })
	require.GreaterOrEqual(t, tbl, 75, "the backfill committed in many files")
	require.Equal(t, int64(3_000_000), want.count)
	require.Equal(t, want.count, got.count, "row count")
	require.Equal(t, want.sum, got.sum, "checksum of the rows")
	require.Equal(t, int64(3_000_000), connector(final, "flights.backfill").Metrics.TotalRecords)
}

// readTableBatches calls fn with every record batch of the table and
// returns the number of commits.
func readTableBatches(t *testing.T, dataDir, p, table string, fn func(arrow.RecordBatch)) int {
	tbl, err := store.Open(context.Background(), store.Location(dataDir, p, table), store.Options{})
	require.NoError(t, err)
	commits, err := tbl.Commits(context.Background())
	require.NoError(t, err)
	require.NoError(t, tbl.Scan(context.Background(), func(rec arrow.RecordBatch) error {
		fn(rec)
		return nil
	}))
	return len(commits)
}
