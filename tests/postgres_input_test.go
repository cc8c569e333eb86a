package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/csv"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/workflows"
)

// flightsInPostgres loads the 3,000,000 flights of flights-3m.parquet into
// a new PostgreSQL table with COPY (CSV written by arrow-go's writer), each
// row with an id from a sequence, and returns the table's name; the table
// is dropped when the test ends.
func flightsInPostgres(t *testing.T) (string, *pgx.Conn) {
	name := fmt.Sprintf("flights_in_%d", rand.IntN(1<<30))
	conn := pgTest(t, name, "id bigserial PRIMARY KEY, date timestamp, delay bigint, distance bigint, origin text, destination text")
	pf, err := file.OpenParquetFile(sharedData(t, "flights-3m.parquet"), false)
	require.NoError(t, err)
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, memory.DefaultAllocator)
	require.NoError(t, err)
	rr, err := fr.GetRecordReader(context.Background(), nil, nil)
	require.NoError(t, err)
	defer rr.Release()
	r, w := io.Pipe()
	go func() {
		cw := csv.NewWriter(w, rr.Schema(), csv.WithNullWriter(""))
		var err error
		for err == nil && rr.Next() {
			err = cw.Write(rr.RecordBatch())
		}
		if err == nil {
			err = cw.Flush()
		}
		w.CloseWithError(err)
	}()
	_, err = conn.PgConn().CopyFrom(context.Background(), r, "COPY "+name+" (date, delay, distance, origin, destination) FROM STDIN WITH (FORMAT csv)")
	require.NoError(t, err)
	return name, conn
}

// postgresInputPipeline reads src's flights with postgres_input into table
// flights, with key_columns [id] if keyed.
func postgresInputPipeline(t *testing.T, name, src string, keyed bool) *pipeline.Pipeline {
	cfg := map[string]any{"uri": "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "query": "SELECT * FROM " + src}
	if keyed {
		cfg["key_columns"] = []string{"id"}
	}
	raw, err := json.Marshal(cfg)
	require.NoError(t, err)
	p := &pipeline.Pipeline{Name: name, StopAtEndOfInput: true, Tables: []pipeline.Table{{
		Name: "flights",
		Columns: []pipeline.Column{{Name: "id", Type: "BIGINT"}, {Name: "date", Type: "TIMESTAMP"}, {Name: "delay", Type: "BIGINT"},
			{Name: "distance", Type: "BIGINT"}, {Name: "origin", Type: "VARCHAR"}, {Name: "destination", Type: "VARCHAR"}},
		Connectors: []pipeline.Connector{{Name: "pg", MaxBatchSize: 10_000, MaxQueuedRecords: 50_000,
			Transport: pipeline.Transport{Name: "postgres_input", Config: raw}}},
	}}}
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	return p
}

// TestPostgresInputCrash reads 3,000,000 flights from PostgreSQL with
// key_columns while the worker process is SIGKILLed three times: every
// row is in the table store exactly once. Then the same rows are read
// without key_columns, in one run.
func TestPostgresInputCrash(t *testing.T) {
	ts, c := newServer(t)
	src, _ := flightsInPostgres(t)
	const n = 3_000_000
	dataDir := t.TempDir()
	bin := buildBinary(t, "worker", t.TempDir())
	name := fmt.Sprintf("pgin%d", rand.IntN(1<<30))
	run := startPipeline(t, c, workflows.Input{Pipeline: *postgresInputPipeline(t, name, src, true), HeartbeatTimeoutSeconds: 3})
	committed := inputRecords(c, name)
	var logs strings.Builder
	kills := []int64{n / 5, 2 * n / 5, 3 * n / 5}
	proc := killDuringInput(t, ts, bin, dataDir, name, kills, func() bool { return committed() < n }, &logs)
	final := finish(t, run)
	require.Nil(t, final.Inputs[0].FatalError, logs.String())
	requireNetOnce(t, dataDir, name, "flights", n)
	t.Logf("postgres_input: %d rows, worker SIGKILLed %d times, each row once", n, len(kills))

	// Without key_columns: counted rows, at least once; one run here.
	_ = proc.Process.Kill()
	_ = proc.Wait()
	startWorker(t, c, dataDir)
	name2 := name + "_nokey"
	final = finish(t, startPipeline(t, c, workflows.Input{Pipeline: *postgresInputPipeline(t, name2, src, false)}))
	require.Nil(t, final.Inputs[0].FatalError)
	require.Equal(t, int64(n), final.Inputs[0].Metrics.TotalRecords)
	require.Len(t, netIDs(t, dataDir, name2, "flights"), n)
}
