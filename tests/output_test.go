package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/connectors/s3"
	dlog "github.com/sluicehq/sluice/delta"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
	"github.com/sluicehq/sluice/workflows"
)

// pgTest connects to the machine's PostgreSQL (127.0.0.1:5432, database
// test), creates table name with the given columns and drops it when
// the test ends.
func pgTest(t *testing.T, name, columns string) *pgx.Conn {
	const uri = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	conn, err := pgx.Connect(context.Background(), uri)
	require.NoError(t, err, "PostgreSQL on 127.0.0.1:5432 (database test) is needed")
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+name)
		_ = conn.Close(context.Background())
	})
	_, err = conn.Exec(context.Background(), fmt.Sprintf("DROP TABLE IF EXISTS %s; CREATE TABLE %s (%s)", name, name, columns))
	require.NoError(t, err)
	return conn
}

// TestOutputAfterBackfill: a postgres_output that start_after's a
// backfill label delivers nothing while the backfill runs (many table
// versions), then all of it in one transaction: the destination never
// shows a half-loaded backfill. With stop_at_end_of_input the workflow
// completes only once the output has delivered every version, and each
// change is in the destination exactly once.
func TestOutputAfterBackfill(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	dest := fmt.Sprintf("events_out_%d", rand.IntN(1<<30))
	conn := pgTest(t, dest, "id BIGINT PRIMARY KEY, label TEXT")
	const n = 20_000
	name := fmt.Sprintf("outafter%d", rand.IntN(1<<30)) // positions in the destination outlive the test
	p := &pipeline.Pipeline{Name: name, StopAtEndOfInput: true, Tables: []pipeline.Table{{
		Name:       "events",
		Columns:    []pipeline.Column{{Name: "id", Type: "BIGINT"}, {Name: "label", Type: "VARCHAR"}},
		PrimaryKey: []string{"id"},
		Connectors: []pipeline.Connector{{
			Name: "backfill", Labels: []string{"backfill"}, MaxBatchSize: 1000, MaxQueuedRecords: 2000,
			Transport: pipeline.Transport{Name: "datagen", Config: json.RawMessage(fmt.Sprintf(
				`{"plan": [{"limit": %d, "rate": 8000, "fields": {"id": {"strategy": "increment"}}}]}`, n))},
		}, {
			Name: "pg", StartAfter: pipeline.Labels{"backfill"},
			Transport: pipeline.Transport{Name: "postgres_output", Config: json.RawMessage(
				`{"uri": "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "table": "` + dest + `", "mode": "materialized"}`)},
		}},
	}}}
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	run := startPipeline(t, c, workflows.Input{Pipeline: *p})

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		done <- run.Get(ctx, nil)
	}()
	seen := map[int64]bool{}
	for finished := false; !finished; {
		select {
		case err := <-done:
			require.NoError(t, err)
			finished = true
		case <-time.After(20 * time.Millisecond):
		}
		var count int64
		require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM "+dest).Scan(&count))
		seen[count] = true
		require.True(t, count == 0 || count == n, "the destination shows %d of the %d backfilled rows", count, n)
	}
	require.True(t, seen[n], "every row delivered before the workflow completed")
	var distinct, version int64
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(DISTINCT id) FROM "+dest).Scan(&distinct))
	require.Equal(t, int64(n), distinct)
	require.NoError(t, conn.QueryRow(context.Background(),
		"SELECT version FROM _sluice_offsets WHERE pipeline = $1 AND table_name = 'events' AND connector = 'pg'", name).Scan(&version))
	st := stats(t, c, name)
	require.Len(t, st.Outputs, 1)
	out := st.Outputs[0]
	require.Nil(t, out.FatalError)
	require.True(t, out.Finished)
	require.Equal(t, int64(n), out.OutputMetrics.TransmittedRecords)
	require.Equal(t, version, out.OutputMetrics.DeliveredVersion, "the stats show the position the destination holds")
	require.Equal(t, out.OutputMetrics.TableVersion, out.OutputMetrics.DeliveredVersion, "no lag at the end")
	require.Greater(t, len(commitsOf(t, dataDir, name, "events")), 3, "the backfill took several table versions")
}

// commitsOf lists a table's connector commits.
func commitsOf(t *testing.T, dataDir, p, table string) []store.CommitRecord {
	tbl, err := store.Open(context.Background(), store.Location(dataDir, p, table), store.Options{})
	require.NoError(t, err)
	defer tbl.Close()
	commits, err := tbl.Commits(context.Background())
	require.NoError(t, err)
	return commits
}

// crashTest is one output under TestOutputCrash*: its connector, how
// many changes its destination shows committed so far (polled; it may
// fail while the destination is unreachable) and the final check that
// every one of n changes is there exactly once.
type crashTest struct {
	output    pipeline.Connector
	delivered func() int64
	check     func(t *testing.T, n int64)
}

// outputCrash delivers n = 300,000 changes (a datagen input of ids at
// 30,000 a second, one table commit every 100 ms) to the output while
// the worker process, which runs both the input and the output, is
// SIGKILLed three times, each while delivery is under way. The workflow
// must complete (stop_at_end_of_input waits for delivery); then the
// output's check runs.
func outputCrash(t *testing.T, kind string, ct crashTest) {
	ts, c := newServer(t)
	dataDir := t.TempDir()
	bin := buildBinary(t, "worker", t.TempDir())
	const n = 300_000
	name := fmt.Sprintf("crash_%s%d", kind, rand.IntN(1<<30)) // positions in the destination outlive the test
	p := idsPipeline(t, name, n, 30_000, 100)
	p.Tables[0].Connectors = append(p.Tables[0].Connectors, ct.output)
	p.Tables[0].Columns = append(p.Tables[0].Columns, pipeline.Column{Name: "label", Type: "VARCHAR"})
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	run := startPipeline(t, c, workflows.Input{Pipeline: *p, HeartbeatTimeoutSeconds: 3})
	var logs strings.Builder
	proc := workerProcess(t, bin, dataDir, ts, &logs)
	kills := 0
	for _, at := range []int64{n / 5, 2 * n / 5, 3 * n / 5} {
		eventually(t, 3*time.Minute, fmt.Sprintf("%d changes delivered", at), func() bool { return ct.delivered() >= at })
		require.NoError(t, proc.Process.Signal(syscall.SIGKILL))
		_ = proc.Wait()
		kills++
		require.Less(t, ct.delivered(), int64(n), "delivery must still be running when killed")
		proc = workerProcess(t, bin, dataDir, ts, &logs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var final workflows.PipelineStats
	require.NoError(t, run.Get(ctx, &final), logs.String())
	require.Len(t, final.Outputs, 1)
	require.Nil(t, final.Outputs[0].FatalError)
	ct.check(t, n)
	t.Logf("%s: %d changes, worker SIGKILLed %d times, each change delivered once", ct.output.Transport.Name, n, kills)
}

// TestOutputCrash: postgres_output in cdc mode (every change appended, so
// a duplicate would show) under outputCrash.
func TestOutputCrash(t *testing.T) {
	dest := fmt.Sprintf("events_cdc_%d", rand.IntN(1<<30))
	conn := pgTest(t, dest, "id BIGINT, label TEXT, __feldera_op TEXT, __feldera_ts TIMESTAMPTZ")
	count := func() int64 {
		var k int64
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+dest).Scan(&k); err != nil {
			t.Fatalf("count %s: %v", dest, err)
		}
		return k
	}
	outputCrash(t, "pg", crashTest{
		output: pipeline.Connector{Name: "pg", Transport: pipeline.Transport{Name: "postgres_output", Config: json.RawMessage(
			`{"uri": "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "table": "` + dest + `", "mode": "cdc"}`)}},
		delivered: count,
		check: func(t *testing.T, n int64) {
			var total, distinct int64
			require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*), count(DISTINCT id) FROM "+dest+" WHERE __feldera_op = 'i'").Scan(&total, &distinct))
			require.Equal(t, n, distinct, "every change delivered")
			require.Equal(t, n, total, "no change delivered twice")
			require.Equal(t, n, count(), "no deletes")
		},
	})
}

// TestOutputCrashKafka: kafka_output (a transactional producer, JSON
// insert_delete) under outputCrash into a kfake cluster of 3 partitions;
// kcat (librdkafka) with isolation.level=read_committed then reads every
// change exactly once.
func TestOutputCrashKafka(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("kcat is not installed (.ci/run installs the Debian package kcat)")
		}
		t.Skip("kcat is not installed: apt-get install kcat")
	}
	addr := kafkaCluster(t, "events", 3)
	var committed atomic.Int64 // read_committed records seen by a consumer in this process
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("events"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	go func() {
		for ctx.Err() == nil {
			committed.Add(int64(cl.PollFetches(ctx).NumRecords()))
		}
	}()
	t.Cleanup(func() { stop(); cl.Close() })
	outputCrash(t, "kafka", crashTest{
		output: pipeline.Connector{Name: "kafka", Transport: pipeline.Transport{Name: "kafka_output", Config: json.RawMessage(
			`{"bootstrap.servers": "` + addr + `", "topic": "events"}`)}},
		delivered: committed.Load,
		check: func(t *testing.T, n int64) {
			out, err := exec.Command(kcat, "-C", "-b", addr, "-t", "events", "-X", "isolation.level=read_committed", "-e", "-q", "-f", "%s\n").Output()
			require.NoError(t, err, "kcat")
			ids := map[int64]int{}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			for _, line := range lines {
				var m struct {
					Insert *struct {
						ID int64 `json:"id"`
					} `json:"insert"`
				}
				require.NoError(t, json.Unmarshal([]byte(line), &m), line)
				require.NotNil(t, m.Insert, "an insert: %s", line)
				ids[m.Insert.ID]++
			}
			require.Len(t, ids, int(n), "every change delivered")
			require.Equal(t, int(n), len(lines), "no change delivered twice")
		},
	})
}

// TestOutputCrashDelta: delta_table_output under outputCrash; DuckDB then
// reads the active files of the destination's log (replayed with its own
// JSON reader) and finds every change once.
func TestOutputCrashDelta(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "events_out")
	delivered := func() int64 {
		st, err := dlog.NewStorage(context.Background(), dir, s3.Settings{})
		require.NoError(t, err)
		snap, err := dlog.LoadLatest(context.Background(), st)
		require.NoError(t, err)
		if snap == nil {
			return 0 // not created yet
		}
		var k int64
		for _, f := range snap.Files {
			k += f.NumRecords()
		}
		return k
	}
	outputCrash(t, "delta", crashTest{
		output: pipeline.Connector{Name: "lake", Transport: pipeline.Transport{Name: "delta_table_output", Config: json.RawMessage(
			`{"uri": "` + dir + `", "mode": "append"}`)}},
		delivered: delivered,
		check: func(t *testing.T, n int64) {
			rows := duckdb(t, "select count(*) as total, count(distinct id) as ids, count(*) filter (where __feldera_op <> 'i') as other from "+duckdbDeltaFiles(t, dir, -1))
			require.Len(t, rows, 1)
			require.Equal(t, fmt.Sprint(n), fmt.Sprint(rows[0]["ids"]), "every change delivered")
			require.Equal(t, fmt.Sprint(n), fmt.Sprint(rows[0]["total"]), "no change delivered twice")
			require.Equal(t, "0", fmt.Sprint(rows[0]["other"]), "no deletes")
			require.Equal(t, n, delivered(), "our own log reader agrees")
		},
	})
}

// TestFlightsToPostgresExample runs examples/flights-to-postgres.yaml:
// 3,000,000 flights backfilled from Parquet, then delivered to
// PostgreSQL; the workflow completes once they are all there.
func TestFlightsToPostgresExample(t *testing.T) {
	_, c := newServer(t)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	dest := fmt.Sprintf("flights_%d", rand.IntN(1<<30))
	conn := pgTest(t, dest, "date timestamp, delay bigint, distance bigint, origin text, destination text, __feldera_op text, __feldera_ts timestamptz")
	p := loadExample(t, "flights-to-postgres.yaml")
	p.Name = fmt.Sprintf("flights_pg%d", rand.IntN(1<<30)) // positions in the destination outlive the test
	p.Tables[0].Connectors[0].Transport.Config = []byte(`{"path": "` + sharedData(t, "flights-3m.parquet") + `"}`)
	p.Tables[0].Connectors[1].Transport.Config = []byte(`{"uri": "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "table": "` + dest + `", "mode": "cdc"}`)
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	run := startPipeline(t, c, workflows.Input{Pipeline: *p})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	var final workflows.PipelineStats
	require.NoError(t, run.Get(ctx, &final))
	require.Equal(t, int64(3_000_000), final.GlobalMetrics.TotalOutputRecords)
	var n int64
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM "+dest+" WHERE __feldera_op = 'i'").Scan(&n))
	require.Equal(t, int64(3_000_000), n)
}

// TestOutputNewTableStore: positions are versions of one Delta table.
// A pipeline delivers to postgres_output, kafka_output,
// delta_table_output and file_output; then a pipeline of the same name
// runs on an empty table store (a new table id, and more versions than
// the first had). Every output refuses with a fatal_error naming both
// table ids rather than skip the new table's first versions, and the
// destinations keep exactly what the first pipeline delivered.
func TestOutputNewTableStore(t *testing.T) {
	_, c := newServer(t)
	dest := fmt.Sprintf("events_ids_%d", rand.IntN(1<<30))
	conn := pgTest(t, dest, "id BIGINT, label TEXT, __feldera_op TEXT, __feldera_ts TIMESTAMPTZ")
	addr := kafkaCluster(t, "events", 1)
	out := t.TempDir()
	lake, file := filepath.Join(out, "lake"), filepath.Join(out, "events.json")
	name := fmt.Sprintf("newstore%d", rand.IntN(1<<30))
	outputs := []pipeline.Connector{
		{Name: "pg", StartAfter: pipeline.Labels{"gen"}, Transport: pipeline.Transport{Name: "postgres_output", Config: json.RawMessage(
			`{"uri": "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "table": "` + dest + `", "mode": "cdc"}`)}},
		{Name: "kafka", StartAfter: pipeline.Labels{"gen"}, Transport: pipeline.Transport{Name: "kafka_output", Config: json.RawMessage(
			`{"bootstrap.servers": "` + addr + `", "topic": "events"}`)}},
		{Name: "lake", StartAfter: pipeline.Labels{"gen"}, Transport: pipeline.Transport{Name: "delta_table_output", Config: json.RawMessage(
			`{"uri": "` + lake + `"}`)}},
		{Name: "file", StartAfter: pipeline.Labels{"gen"}, Transport: pipeline.Transport{Name: "file_output", Config: json.RawMessage(
			`{"path": "` + file + `"}`)}, Format: &pipeline.Format{Name: "json"}},
	}
	run := func(dataDir string, n, rate int) (*pipeline.Pipeline, func()) {
		p := idsPipeline(t, name, n, rate, 100)
		p.Tables[0].Columns = append(p.Tables[0].Columns, pipeline.Column{Name: "label", Type: "VARCHAR"})
		p.Tables[0].Connectors = append(p.Tables[0].Connectors, outputs...)
		require.NoError(t, pipeline.Validate(p, builtin.Registry()))
		w := sluice.NewWorker(c, sluice.WorkerOptions{Registry: builtin.Registry(), DataDir: dataDir})
		require.NoError(t, w.Start())
		stop := sync.OnceFunc(w.Stop)
		t.Cleanup(stop)
		return p, stop
	}
	p, stop := run(t.TempDir(), 100, 1_000_000)
	final := finish(t, startPipeline(t, c, workflows.Input{Pipeline: *p}))
	require.Equal(t, int64(4*100), final.GlobalMetrics.TotalOutputRecords)
	stop()

	p, _ = run(t.TempDir(), 3000, 2000) // ~15 table versions, more than the first table has
	startPipeline(t, c, workflows.Input{Pipeline: *p})
	var failed map[string]string
	eventually(t, 2*time.Minute, "every output fails", func() bool {
		st, err := sluice.Stats(context.Background(), c, name)
		if err != nil {
			return false
		}
		failed = map[string]string{}
		for _, o := range st.Outputs {
			if o.FatalError != nil {
				failed[o.EndpointName] = *o.FatalError
			}
		}
		return len(failed) == len(outputs)
	})
	for ep, msg := range failed {
		require.Contains(t, msg, "the destination holds the changes of table id", ep)
		require.Contains(t, msg, "(the pipeline's table store was recreated)", ep)
	}
	require.NoError(t, c.TerminateWorkflow(context.Background(), pipeline.WorkflowID(name), "", "test over"))

	var k int64
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM "+dest).Scan(&k))
	require.Equal(t, int64(100), k, "postgres keeps what the first pipeline delivered")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, 100, strings.Count(string(b), "\n"), "the file keeps what the first pipeline delivered")
	rows := duckdb(t, "select count(*) as n from "+duckdbDeltaFiles(t, lake, -1))
	require.Equal(t, "100", fmt.Sprint(rows[0]["n"]), "the Delta table keeps what the first pipeline delivered")
}

// TestOutputPauseStart: an output created paused delivers nothing while
// its input runs; started, it delivers; paused, its destination stops
// changing while the table grows; started again, it resumes from the
// destination's position, and once the input has finished the workflow
// completes with every change in the destination exactly once.
func TestOutputPauseStart(t *testing.T) {
	_, c := newServer(t)
	startWorker(t, c, t.TempDir())
	dest := fmt.Sprintf("events_pause_%d", rand.IntN(1<<30))
	conn := pgTest(t, dest, "id BIGINT, label TEXT, __feldera_op TEXT, __feldera_ts TIMESTAMPTZ")
	const n = 30_000
	name := fmt.Sprintf("outpause%d", rand.IntN(1<<30))
	p := idsPipeline(t, name, n, 2000, 100)
	p.Tables[0].Columns = append(p.Tables[0].Columns, pipeline.Column{Name: "label", Type: "VARCHAR"})
	p.Tables[0].Connectors = append(p.Tables[0].Connectors, pipeline.Connector{
		Name: "pg", Paused: true,
		Transport: pipeline.Transport{Name: "postgres_output", Config: json.RawMessage(
			`{"uri": "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "table": "` + dest + `", "mode": "cdc"}`)},
	})
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	run := startPipeline(t, c, workflows.Input{Pipeline: *p})
	count := func() int64 {
		var k int64
		require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM "+dest).Scan(&k))
		return k
	}
	output := func() workflows.ConnectorStats {
		st := stats(t, c, name)
		require.Len(t, st.Outputs, 1)
		return st.Outputs[0]
	}
	ref := &workflows.ConnectorRef{Table: "events", Connector: "pg"}
	eventually(t, time.Minute, "the input commits", func() bool { return connector(stats(t, c, name), "events.gen").Metrics.TotalRecords >= 2000 })
	require.Equal(t, "Paused", output().State)
	require.Zero(t, count(), "a paused output delivers nothing")

	require.NoError(t, sluice.Command(context.Background(), c, name, workflows.ConnectorStart, ref))
	eventually(t, time.Minute, "delivery starts", func() bool { return count() > 0 })
	require.NoError(t, sluice.Command(context.Background(), c, name, workflows.ConnectorPause, ref))
	eventually(t, time.Minute, "the pause ends the Deliver activity", func() bool {
		return !activityRunning(t, c, pipeline.WorkflowID(name), "events.pg")
	})
	require.Equal(t, "Paused", output().State)
	paused, records := count(), connector(stats(t, c, name), "events.gen").Metrics.TotalRecords
	require.Less(t, paused, int64(n), "paused while the input still runs")
	eventually(t, time.Minute, "the table grows", func() bool {
		return connector(stats(t, c, name), "events.gen").Metrics.TotalRecords > records+2000
	})
	require.Equal(t, paused, count(), "a paused output's destination does not change")

	require.NoError(t, sluice.Command(context.Background(), c, name, workflows.ConnectorStart, ref))
	final := finish(t, run)
	require.Nil(t, final.Outputs[0].FatalError)
	var total, distinct int64
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*), count(DISTINCT id) FROM "+dest).Scan(&total, &distinct))
	require.Equal(t, int64(n), distinct, "every change delivered")
	require.Equal(t, int64(n), total, "no change delivered twice")
}
