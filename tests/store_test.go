package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/connectors/delta"
	"github.com/sluicehq/sluice/internal/fixture"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
	"github.com/sluicehq/sluice/workflows"
)

// idsPipeline is one table (id BIGINT) fed by a live datagen of ids
// 0..n-1 at rate records/s, committing every commitMs.
func idsPipeline(t *testing.T, name string, n, rate, commitMs int) *pipeline.Pipeline {
	p := &pipeline.Pipeline{Name: name, StopAtEndOfInput: true, Tables: []pipeline.Table{{
		Name:    "events",
		Columns: []pipeline.Column{{Name: "id", Type: "BIGINT"}},
		Connectors: []pipeline.Connector{{
			Name: "gen", Labels: []string{"gen"}, CommitIntervalMs: commitMs, MaxBatchSize: 1000,
			Transport: pipeline.Transport{Name: "datagen", Config: json.RawMessage(fmt.Sprintf(
				`{"plan": [{"limit": %d, "rate": %d, "fields": {"id": {"strategy": "increment", "range": [0, 100000000]}}}]}`, n, rate))},
		}},
	}}}
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	return p
}

// netIDs applies the weights of a table's current snapshot: id -> count.
func netIDs(t *testing.T, dataDir, p, table string) map[int64]int64 {
	tbl, err := store.Open(context.Background(), store.Location(dataDir, p, table), store.Options{})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	require.NoError(t, err)
	out := map[int64]int64{}
	require.NoError(t, tbl.Scan(context.Background(), func(rec arrow.RecordBatch) error {
		ids, w := rec.Column(0).(*array.Int64).Int64Values(), rec.Column(int(rec.NumCols())-1).(*array.Int64).Int64Values()
		for i := range ids {
			out[ids[i]] += w[i]
		}
		return nil
	}))
	return dropZero(out)
}

// requireNetOnce checks that table of pipeline p nets to n distinct ids
// (its first column), each with weight 1.
func requireNetOnce(t *testing.T, dataDir, p, table string, n int) {
	t.Helper()
	ids := netIDs(t, dataDir, p, table)
	require.Len(t, ids, n, "every record stored")
	for id, w := range ids {
		require.Equal(t, int64(1), w, "id %d stored %d times", id, w)
	}
}

// requireEachIDOnce checks that the events table of pipeline p holds ids
// 0..n-1, each exactly once.
func requireEachIDOnce(t *testing.T, dataDir, p string, n int) {
	t.Helper()
	counts := map[int64]int{}
	for _, r := range readTable(t, dataDir, p, "events") {
		counts[r.values[0].(int64)]++
	}
	require.Len(t, counts, n)
	for id, k := range counts {
		require.Equal(t, 1, k, "id %d stored %d times", id, k)
	}
}

// dropZero removes the ids whose weights cancel out.
func dropZero(ids map[int64]int64) map[int64]int64 {
	for id, n := range ids {
		if n == 0 {
			delete(ids, id)
		}
	}
	return ids
}

// TestStoreLiveRun is a long live run shortened by options: a connector
// committing every 20 ms for 12 s (600 versions), compaction after 8
// small files, a log checkpoint every 25 versions; then a file of
// deletes. The active snapshot stays small while the run goes on; every
// record is in the table once. The table is a Delta table others read:
// DuckDB, replaying the log with its own JSON reader, and Sluice's
// delta_table_input find the same rows before the first compaction and
// at the end, and the change stream holds every insert and delete once.
func TestStoreLiveRun(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	w := sluice.NewWorker(c, sluice.WorkerOptions{Registry: builtin.Registry(), DataDir: dataDir, Store: store.Options{CompactMinFiles: 8, CheckpointInterval: 25}})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	const n = 12_000
	p := idsPipeline(t, "live", n, 1000, 20)
	deletes := filepath.Join(t.TempDir(), "deletes.json")
	var lines []string
	for id := range 100 {
		lines = append(lines, fmt.Sprintf(`{"delete": {"id": %d}}`, id*7))
	}
	require.NoError(t, os.WriteFile(deletes, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	p.Tables[0].Connectors = append(p.Tables[0].Connectors, pipeline.Connector{Name: "deletes", StartAfter: pipeline.Labels{"gen"},
		Transport: pipeline.Transport{Name: "file_input", Config: json.RawMessage(fmt.Sprintf(`{"path": %q}`, deletes))},
		Format:    &pipeline.Format{Name: "json", Config: json.RawMessage(`{"update_format": "insert_delete"}`)}})
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	run := startPipeline(t, c, workflows.Input{Pipeline: *p})

	loc := store.Location(dataDir, "live", "events")
	maxActive := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = run.Get(ctx, nil)
	}()
	for sampling := true; sampling; {
		select {
		case <-done:
			sampling = false
		case <-time.After(200 * time.Millisecond):
			if tbl, err := store.Open(context.Background(), loc, store.Options{}); err == nil {
				_, files, err := tbl.Snapshot(context.Background())
				require.NoError(t, err)
				maxActive = max(maxActive, len(files))
			}
		}
	}
	final := finish(t, run)
	require.Equal(t, int64(n), connector(final, "events.gen").Metrics.TotalRecords)
	require.Equal(t, int64(100), connector(final, "events.deletes").Metrics.TotalRecords)

	tbl, err := store.Open(context.Background(), loc, store.Options{})
	require.NoError(t, err)
	commits, err := tbl.Commits(context.Background())
	require.NoError(t, err)
	require.Greater(t, len(commits), 300, "a commit every ~20 ms")
	version, files, err := tbl.Snapshot(context.Background())
	require.NoError(t, err)
	t.Logf("%d versions, %d connector commits, %d active files at the end, at most %d during the run", version+1, len(commits), len(files), maxActive)
	require.LessOrEqual(t, maxActive, 8+2, "compaction keeps the active snapshot small")

	want := map[int64]int64{}
	for id := range int64(n) {
		if id%7 != 0 || id >= 700 {
			want[id] = 1
		}
	}
	require.Equal(t, want, netIDs(t, dataDir, "live", "events"), "every record once, the deleted ones gone")

	// DuckDB: the active files by replaying the JSON log, before the first
	// compaction and at the end.
	firstCompaction := duckdb(t, fmt.Sprintf(`select min(version)::varchar as v from %s where not data_change`, duckdbDeltaLog(loc)))
	before, err := strconv.ParseInt(firstCompaction[0]["v"].(string), 10, 64)
	require.NoError(t, err)
	before-- // the version just before it
	for _, v := range []int64{before, version} {
		got := duckdb(t, fmt.Sprintf(`select count(*)::varchar as ids, sum(id)::varchar as sum, min(w)::varchar as min_w, max(w)::varchar as max_w
			from (select id, sum(_weight) as w from %s group by id having sum(_weight) <> 0)`, duckdbDeltaFiles(t, loc, v)))
		sluiceIDs := deltaInputIDs(t, loc, v)
		var sum int64
		for id, w := range sluiceIDs {
			require.Equal(t, int64(1), w, "id %d at version %d", id, v)
			sum += id
		}
		require.Equal(t, []map[string]any{{"ids": strconv.Itoa(len(sluiceIDs)), "sum": strconv.FormatInt(sum, 10), "min_w": "1", "max_w": "1"}}, got,
			"DuckDB and delta_table_input read version %d alike", v)
		if v == version {
			require.Equal(t, want, sluiceIDs)
		}
	}
	// The change stream (dataChange true only): every insert and delete once.
	added := duckdb(t, fmt.Sprintf(`select path from %s where is_add and data_change order by path`, duckdbDeltaLog(loc)))
	var paths []string
	for _, a := range added {
		paths = append(paths, fmt.Sprintf("'%s/%s'", loc, a["path"]))
	}
	changes := duckdb(t, fmt.Sprintf(`select count(*)::varchar as n, sum(_weight)::varchar as w from read_parquet([%s])`, strings.Join(paths, ", ")))
	require.Equal(t, []map[string]any{{"n": strconv.Itoa(n + 100), "w": strconv.Itoa(n - 100)}}, changes)
}

// deltaInputIDs reads the Sluice table at loc, version v, with
// delta_table_input and applies the weights.
func deltaInputIDs(t *testing.T, loc string, v int64) map[int64]int64 {
	schema := fixture.Schema("id BIGINT")
	d := fixture.ReadSource(t, delta.New, connectors.Params{Endpoint: "t.delta", Schema: schema, BatchSize: 4096,
		Config: json.RawMessage(fmt.Sprintf(`{"uri": %q, "mode": "snapshot", "version": %d}`, loc, v))}, nil, 0, true)
	require.True(t, d.EndOfInput)
	out := map[int64]int64{}
	for _, r := range d.Rows {
		id, w, ok := strings.Cut(r, "|")
		require.True(t, ok, r)
		i, err := strconv.ParseInt(id, 10, 64)
		require.NoError(t, err)
		wn, err := strconv.ParseInt(w, 10, 64)
		require.NoError(t, err)
		out[i] += wn
	}
	return dropZero(out)
}

// TestTableIdentity: the workflow records the table's Delta table; a
// worker started with another --data-dir, or a store deleted under a
// running pipeline, fails the connector with a message naming both, and
// writes nothing elsewhere.
func TestTableIdentity(t *testing.T) {
	_, c := newServer(t)
	first, second := t.TempDir(), t.TempDir()
	w := sluice.NewWorker(c, sluice.WorkerOptions{Registry: builtin.Registry(), DataDir: first})
	require.NoError(t, w.Start())
	p := idsPipeline(t, "ident", 1_000_000, 500, 100)
	startPipeline(t, c, workflows.Input{Pipeline: *p})
	eventually(t, 30*time.Second, "the first commits", func() bool { return len(netIDs(t, first, "ident", "events")) > 0 })
	require.NoError(t, sluice.Command(context.Background(), c, "ident", workflows.ConnectorPause, &workflows.ConnectorRef{Table: "events", Connector: "gen"}))
	eventually(t, 10*time.Second, "paused", func() bool { return !activityRunning(t, c, "pipeline-ident", "events.gen") })
	w.Stop()

	// Another data dir.
	w = sluice.NewWorker(c, sluice.WorkerOptions{Registry: builtin.Registry(), DataDir: second})
	require.NoError(t, w.Start())
	require.NoError(t, sluice.Command(context.Background(), c, "ident", workflows.ConnectorStart, &workflows.ConnectorRef{Table: "events", Connector: "gen"}))
	var msg string
	eventually(t, 30*time.Second, "the connector fails", func() bool {
		if e := connector(stats(t, c, "ident"), "events.gen").FatalError; e != nil {
			msg = *e
		}
		return msg != ""
	})
	require.Contains(t, msg, store.Location(first, "ident", "events"))
	require.Contains(t, msg, store.Location(second, "ident", "events"))
	_, err := os.Stat(filepath.Join(second, "ident"))
	require.ErrorIs(t, err, os.ErrNotExist, "nothing written under the other data dir")
	w.Stop()

	// The store deleted.
	require.NoError(t, os.RemoveAll(filepath.Join(first, "ident")))
	w = sluice.NewWorker(c, sluice.WorkerOptions{Registry: builtin.Registry(), DataDir: first})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	require.NoError(t, sluice.Command(context.Background(), c, "ident", workflows.ConnectorStart, &workflows.ConnectorRef{Table: "events", Connector: "gen"}))
	eventually(t, 30*time.Second, "the connector fails again", func() bool {
		e := connector(stats(t, c, "ident"), "events.gen").FatalError
		return e != nil && strings.Contains(*e, "does not exist any more")
	})
	_, err = os.Stat(filepath.Join(first, "ident"))
	require.ErrorIs(t, err, os.ErrNotExist, "no new table in its place")
}

// TestStaleAttemptSIGSTOP freezes a worker process (SIGSTOP) past the
// heartbeat timeout while its connector ingests; Temporal retries the
// activity on another worker, which resumes from the table and commits.
// Woken (SIGCONT), the stale attempt is fenced: no record is stored
// twice and the connector does not fail.
func TestStaleAttemptSIGSTOP(t *testing.T) {
	const n = 16_000
	f := freezeWorker(t, "frozen", n, 2, 2000) // the retry runs on the live worker
	dataDir, run, frozen, logs := f.dataDir, f.run, f.proc, f.logs
	stoppedAt := len(readTable(t, dataDir, "frozen", "events"))
	eventually(t, 30*time.Second, "the retry commits", func() bool { return len(readTable(t, dataDir, "frozen", "events")) > stoppedAt+2000 })
	require.NoError(t, frozen.Process.Signal(syscall.SIGCONT))
	final := finish(t, run)

	st := connector(final, "events.gen")
	require.Nil(t, st.FatalError, "the connector is not failed by its own zombie")
	require.NoError(t, frozen.Process.Signal(syscall.Signal(0)), "the woken worker is still running")
	require.NotContains(t, logs.String(), "panic", "the woken worker's log")
	require.Contains(t, logs.String(), "this attempt is stale", "the woken attempt was fenced")
	require.Equal(t, int64(n), st.Metrics.TotalRecords)
	requireEachIDOnce(t, dataDir, "frozen", n)
}

// TestS3TwoWorkers runs a pipeline on two workers that share an S3 table
// store (--data-dir s3://lake/tables) on versitygw, which honours
// conditional writes: two connectors of one table, on whichever worker
// Temporal gives them, commit to one Delta table; every record is there
// once and the table reads back through delta_table_input from S3.
func TestS3TwoWorkers(t *testing.T) {
	settings := fixture.Versitygw(t, "lake")
	_, c := newServer(t)
	const root = "s3://lake/tables"
	for range 2 {
		w := sluice.NewWorker(c, sluice.WorkerOptions{Registry: builtin.Registry(), DataDir: root, Store: store.Options{S3: settings, CompactMinFiles: 10, CheckpointInterval: 20}})
		require.NoError(t, w.Start())
		t.Cleanup(w.Stop)
	}
	const n = 6000
	p := idsPipeline(t, "s3", n, 2000, 50)
	second := p.Tables[0].Connectors[0]
	second.Name, second.Labels = "gen2", nil
	second.Transport.Config = json.RawMessage(fmt.Sprintf(`{"plan": [{"limit": %d, "rate": 2000, "fields": {"id": {"strategy": "increment", "range": [%d, 100000000]}}}]}`, n, n))
	p.Tables[0].Connectors = append(p.Tables[0].Connectors, second)
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	final := finish(t, startPipeline(t, c, workflows.Input{Pipeline: *p}))
	require.Equal(t, int64(2*n), final.GlobalMetrics.TotalInputRecords)

	loc := store.Location(root, "s3", "events")
	tbl, err := store.Open(context.Background(), loc, store.Options{S3: settings})
	require.NoError(t, err)
	ids := map[int64]int64{}
	require.NoError(t, tbl.Scan(context.Background(), func(rec arrow.RecordBatch) error {
		for i, id := range rec.Column(0).(*array.Int64).Int64Values() {
			ids[id] += rec.Column(1).(*array.Int64).Value(i)
		}
		return nil
	}))
	require.Len(t, ids, 2*n)
	for id, k := range ids {
		require.Equal(t, int64(1), k, "id %d", id)
	}
	cfg, _ := json.Marshal(map[string]any{"uri": loc, "mode": "snapshot", "endpoint_url": settings.EndpointURL, "region": settings.Region,
		"aws_access_key_id": settings.AccessKeyID, "aws_secret_access_key": settings.SecretAccessKey})
	d := fixture.ReadSource(t, delta.New, connectors.Params{Endpoint: "t.delta", Schema: fixture.Schema("id BIGINT"), BatchSize: 4096, Config: cfg}, nil, 0, false)
	require.Equal(t, int64(2*n), d.Hash.Records, "delta_table_input reads the table from S3")
}
