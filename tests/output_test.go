package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors/builtin"
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

// TestOutputCrash delivers 300,000 changes to postgres_output in cdc
// mode (every change appended, so a duplicate would show) while the
// worker process, which runs both the input and the output, is
// SIGKILLed three times. Every change is in the destination exactly once
// and the position in _sluice_offsets is the table's last version.
func TestOutputCrash(t *testing.T) {
	ts, c := newServer(t)
	dataDir := t.TempDir()
	bin := buildBinary(t, "worker", t.TempDir())
	dest := fmt.Sprintf("events_cdc_%d", rand.IntN(1<<30))
	conn := pgTest(t, dest, "id BIGINT, label TEXT, __feldera_op TEXT, __feldera_ts TIMESTAMPTZ")
	const n = 300_000
	p := idsPipeline(t, fmt.Sprintf("outcrash%d", rand.IntN(1<<30)), n, 30_000, 100)
	p.Tables[0].Connectors = append(p.Tables[0].Connectors, pipeline.Connector{
		Name: "pg",
		Transport: pipeline.Transport{Name: "postgres_output", Config: json.RawMessage(
			`{"uri": "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "table": "` + dest + `", "mode": "cdc"}`)},
	})
	p.Tables[0].Columns = append(p.Tables[0].Columns, pipeline.Column{Name: "label", Type: "VARCHAR"})
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	run := startPipeline(t, c, workflows.Input{Pipeline: *p, HeartbeatTimeoutSeconds: 3})
	count := func() int64 {
		var k int64
		require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM "+dest).Scan(&k))
		return k
	}
	var logs strings.Builder
	proc := workerProcess(t, bin, dataDir, ts, &logs)
	kills := 0
	for _, at := range []int64{n / 5, 2 * n / 5, 3 * n / 5} {
		eventually(t, 3*time.Minute, fmt.Sprintf("%d changes delivered", at), func() bool { return count() >= at })
		require.NoError(t, proc.Process.Signal(syscall.SIGKILL))
		_ = proc.Wait()
		kills++
		require.Less(t, count(), int64(n), "delivery must still be running when killed")
		proc = workerProcess(t, bin, dataDir, ts, &logs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	require.NoError(t, run.Get(ctx, nil), logs.String())
	var total, distinct int64
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*), count(DISTINCT id) FROM "+dest+" WHERE __feldera_op = 'i'").Scan(&total, &distinct))
	require.Equal(t, int64(n), distinct, "every change delivered")
	require.Equal(t, int64(n), total, "no change delivered twice")
	require.Equal(t, int64(n), count(), "no deletes")
	t.Logf("postgres_output: %d changes, worker SIGKILLed %d times, duplicates 0", n, kills)
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
