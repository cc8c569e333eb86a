package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/pipeline"
)

// BenchmarkFlightsCDC delivers flights-3m.parquet (3,000,000 rows) in one
// cdc commit and, once, psql's \copy of the same rows (the cdc columns
// included) from CSV into a table of the same columns; it reports both times and their ratio.
//
//	go test -run '^$' -bench FlightsCDC -benchtime 1x ./connectors/postgres/
func BenchmarkFlightsCDC(b *testing.B) {
	data := os.Getenv("SLUICE_FLIGHTS")
	if data == "" {
		data = "/work/shared/data/flights-3m.parquet"
	}
	if _, err := os.Stat(data); err != nil {
		b.Skip("no ", data)
	}
	f, err := file.OpenParquetFile(data, false)
	require.NoError(b, err)
	defer f.Close()
	fr, err := pqarrow.NewFileReader(f, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, memory.DefaultAllocator)
	require.NoError(b, err)
	rr, err := fr.GetRecordReader(context.Background(), nil, nil)
	require.NoError(b, err)
	defer rr.Release()
	schema := rr.Schema()
	change := pipeline.WithWeight(schema)
	var recs []arrow.RecordBatch
	rows := 0
	for rr.Next() {
		rec := rr.RecordBatch()
		wb := array.NewInt64Builder(memory.DefaultAllocator)
		for i := 0; i < int(rec.NumRows()); i++ {
			wb.Append(1)
		}
		w := wb.NewArray()
		cols := append(append([]arrow.Array{}, rec.Columns()...), w)
		recs = append(recs, array.NewRecordBatch(change, cols, rec.NumRows()))
		w.Release()
		wb.Release()
		rows += int(rec.NumRows())
	}
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	ddl := ""
	for _, fld := range schema.Fields() {
		pg := map[arrow.Type]string{arrow.TIMESTAMP: "timestamp", arrow.INT16: "smallint", arrow.INT32: "integer", arrow.INT64: "bigint", arrow.STRING: "text", arrow.LARGE_STRING: "text", arrow.FLOAT64: "float8", arrow.FLOAT32: "real"}[fld.Type.ID()]
		require.NotEmpty(b, pg, "type %s", fld.Type)
		ddl += fmt.Sprintf("%q %s, ", fld.Name, pg)
	}
	conn, sch := db(b)
	ctx := context.Background()
	var sinkTime time.Duration
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		tbl := fmt.Sprintf("%s.flights_%d", sch, n)
		exec(b, conn, "CREATE TABLE "+tbl+" ("+ddl+"__feldera_op text, __feldera_ts timestamptz)")
		s, err := NewOutput(connectors.SinkParams{Endpoint: "flights.pg", Pipeline: "bench", Table: "flights", Connector: fmt.Sprint(n), Config: json.RawMessage(fmt.Sprintf(`{"uri": %q, "table": %q, "mode": "cdc"}`, testURI, tbl)), Schema: schema})
		require.NoError(b, err)
		b.StartTimer()
		start := time.Now()
		_, err = s.Open(ctx)
		require.NoError(b, err)
		for _, r := range recs {
			require.NoError(b, s.Write(ctx, connectors.ChangeBatch{Record: r, Version: 0, Time: start}))
		}
		require.NoError(b, s.Commit(ctx, 0))
		sinkTime = time.Since(start)
		b.StopTimer()
		require.NoError(b, s.Close())
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(rows)/sinkTime.Seconds(), "rows/s")
	if _, err := osexec.LookPath("psql"); err != nil {
		return
	}
	csv := filepath.Join(b.TempDir(), "flights.csv")
	cols := ""
	for i, fld := range schema.Fields() {
		if i > 0 {
			cols += ", "
		}
		cols += fmt.Sprintf("%q", fld.Name)
	}
	psql := func(cmd string) time.Duration {
		start := time.Now()
		out, err := osexec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", testURI, "-c", cmd).CombinedOutput()
		require.NoError(b, err, "%s", out)
		return time.Since(start)
	}
	cols += ", __feldera_op, __feldera_ts" // the same rows, the cdc columns included
	psql(fmt.Sprintf(`\copy (SELECT %s FROM %s.flights_0) TO '%s' CSV`, cols, sch, csv))
	exec(b, conn, "CREATE TABLE "+sch+".flights_copy ("+ddl+"__feldera_op text, __feldera_ts timestamptz)")
	copyTime := psql(fmt.Sprintf(`\copy %s.flights_copy (%s) FROM '%s' CSV`, sch, cols, csv))
	b.ReportMetric(copyTime.Seconds(), "psql_copy_s")
	b.ReportMetric(sinkTime.Seconds(), "sink_s")
	b.ReportMetric(sinkTime.Seconds()/copyTime.Seconds(), "ratio")
}
