package delta_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/delta"
	dlog "github.com/sluicehq/sluice/delta"
	"github.com/sluicehq/sluice/internal/fixture"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
)

var outSchema = fixture.Schema("id BIGINT", "name VARCHAR")

// change is one row of a change batch: id, name and weight.
type change struct {
	id     int64
	name   string
	weight int64
}

// changes builds a change batch (the table's columns and _weight).
func changes(alloc memory.Allocator, sc *arrow.Schema, rows ...change) arrow.RecordBatch {
	b := array.NewRecordBuilder(alloc, pipeline.WithWeight(sc))
	defer b.Release()
	for _, r := range rows {
		b.Field(0).(*array.Int64Builder).Append(r.id)
		b.Field(1).(*array.StringBuilder).Append(r.name)
		b.Field(2).(*array.Int64Builder).Append(r.weight)
	}
	return b.NewRecordBatch()
}

// output builds an opened delta_table_output for connector c.
func output(t *testing.T, alloc memory.Allocator, c, cfg string) (connectors.Sink, int64, error) {
	t.Helper()
	sink, err := delta.NewOutput(connectors.SinkParams{Endpoint: "t." + c, Pipeline: "p", Table: "t", Connector: c,
		Config: json.RawMessage(cfg), Schema: outSchema, Allocator: alloc})
	require.NoError(t, err)
	v, err := sink.Open(context.Background())
	return sink, v, err
}

// deliver writes each batch of rows as one Write and commits version.
func deliver(t *testing.T, alloc memory.Allocator, sink connectors.Sink, version int64, at time.Time, batches ...[]change) error {
	t.Helper()
	ctx := context.Background()
	for _, rows := range batches {
		rec := changes(alloc, outSchema, rows...)
		err := sink.Write(ctx, connectors.ChangeBatch{Record: rec, Version: version, Time: at})
		rec.Release()
		require.NoError(t, err)
	}
	return sink.Commit(ctx, version)
}

// readBack reads the output table with delta_table_input in snapshot
// mode: "id|name|op|ts" rows, sorted.
func readBack(t *testing.T, dir string) []string {
	t.Helper()
	sc := fixture.Schema("id BIGINT", "name VARCHAR", "__feldera_op VARCHAR", "__feldera_ts BIGINT")
	d := read(t, cfg(dir, `"mode": "snapshot"`), sc, nil, 0)
	require.True(t, d.EndOfInput)
	var rows []string
	for _, r := range d.Rows {
		require.True(t, strings.HasSuffix(r, "|+1"), r)
		rows = append(rows, strings.TrimSuffix(r, "|+1"))
	}
	sort.Strings(rows)
	return rows
}

// dataFiles lists the Parquet files in dir (not the log's).
func dataFiles(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range es {
		if strings.HasSuffix(e.Name(), ".parquet") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestOutputChangeLog writes three commits of inserts and deletes and
// reads them back with the table store's reader, the log (txn, files)
// and delta_table_input: every change once, with its op and timestamp.
func TestOutputChangeLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	sink, v, err := output(t, alloc, "d", cfg(dir, ""))
	require.NoError(t, err)
	require.Equal(t, int64(-1), v)
	require.Equal(t, connectors.ExactlyOnce, sink.(connectors.Guaranteed).Guarantee())

	t3, t5, t7 := time.UnixMicro(1_700_000_000_000_003), time.UnixMicro(1_700_000_000_000_005), time.UnixMicro(1_700_000_000_000_007)
	require.NoError(t, deliver(t, alloc, sink, 3, t3, []change{{1, "a", 1}, {2, "b", 1}}, []change{{3, "c", 1}}))
	require.NoError(t, deliver(t, alloc, sink, 5, t5, []change{{2, "b", -1}, {4, "d", 1}}))
	// Weights other than ±1 repeat the row; a batch may mix ops.
	require.NoError(t, deliver(t, alloc, sink, 7, t7, []change{{5, "e", 2}, {1, "a", -1}}))
	bytes, encErrs := sink.(connectors.SinkMetrics).Transmitted()
	require.Positive(t, bytes)
	require.Zero(t, encErrs)
	require.NoError(t, sink.Close())

	ts := func(tm time.Time) string { return fmt.Sprint(tm.UnixMicro()) }
	require.Equal(t, []string{
		"1|a|d|" + ts(t7), "1|a|i|" + ts(t3), "2|b|d|" + ts(t5), "2|b|i|" + ts(t3), "3|c|i|" + ts(t3),
		"4|d|i|" + ts(t5), "5|e|i|" + ts(t7), "5|e|i|" + ts(t7),
	}, readBack(t, dir))

	st, err := dlog.NewStorage(context.Background(), dir, delta.OutputConfig{}.Settings)
	require.NoError(t, err)
	snap, err := dlog.LoadLatest(context.Background(), st)
	require.NoError(t, err)
	require.Equal(t, int64(3), snap.Version, "create, then one version per commit")
	require.Equal(t, map[string]int64{"sluice-p-t-d": 7}, snap.Txns)
	require.Len(t, snap.Files, 3)
	require.ElementsMatch(t, dataFiles(t, dir), keys(snap.Files))
	require.Equal(t, 1, snap.Protocol.MinReaderVersion)

	// The table store's reader sees the same rows (it reads any Delta
	// table's active files with the schema of its metaData).
	tbl, err := store.Open(context.Background(), dir, store.Options{})
	require.NoError(t, err)
	defer tbl.Close()
	var scanned []string
	require.NoError(t, tbl.Scan(context.Background(), func(rec arrow.RecordBatch) error {
		require.Equal(t, []string{"id", "name", "__feldera_op", "__feldera_ts"}, fieldNames(rec.Schema()))
		for i := range int(rec.NumRows()) {
			scanned = append(scanned, fixture.Row(rec, i, 3))
		}
		return nil
	}))
	sort.Strings(scanned)
	require.Equal(t, []string{"1|a|d", "1|a|i", "2|b|d", "2|b|i", "3|c|i", "4|d|i", "5|e|i", "5|e|i"}, scanned)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func fieldNames(sc *arrow.Schema) []string {
	var out []string
	for _, f := range sc.Fields() {
		out = append(out, f.Name)
	}
	return out
}

// TestOutputExactlyOnce reopens the output after commits: Open returns
// the delivered version, a repeated Commit of a delivered version adds
// nothing (and leaves no file behind), a commit conflict moves to the
// next version, and a stale attempt whose start position was overtaken
// by another attempt is refused rather than duplicating rows.
func TestOutputExactlyOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	ctx := context.Background()
	at := time.UnixMicro(1)

	sink, _, err := output(t, alloc, "d", cfg(dir, `"mode": "append"`))
	require.NoError(t, err)
	require.NoError(t, deliver(t, alloc, sink, 1, at, []change{{1, "a", 1}}))
	require.NoError(t, sink.Close())

	// The retried attempt: Open says 1 is delivered; committing 1 again
	// (as a Deliver activity that lost its heartbeat might) is skipped.
	sink, v, err := output(t, alloc, "d", cfg(dir, `"mode": "append"`))
	require.NoError(t, err)
	require.Equal(t, int64(1), v)
	require.NoError(t, deliver(t, alloc, sink, 1, at, []change{{1, "a", 1}}))
	require.Len(t, dataFiles(t, dir), 1, "the skipped commit's file is deleted")

	// Another writer takes the next version first: the commit lands after it.
	st, err := dlog.NewStorage(ctx, dir, delta.OutputConfig{}.Settings)
	require.NoError(t, err)
	snap, err := dlog.LoadLatest(ctx, st)
	require.NoError(t, err)
	require.NoError(t, dlog.WriteCommit(ctx, st, snap.Version+1, []dlog.Action{{CommitInfo: &dlog.CommitInfo{Timestamp: 1, Operation: "OTHER"}}}))
	require.NoError(t, deliver(t, alloc, sink, 2, at, []change{{2, "b", 1}}))
	after, err := dlog.LoadLatest(ctx, st)
	require.NoError(t, err)
	require.Equal(t, snap.Version+2, after.Version)
	require.Equal(t, int64(2), after.Txns["sluice-p-t-d"])

	// Two attempts open at 2. The new one delivers 3..4; the stale one
	// then commits 3 (skipped: delivered) and 5 (refused: it would
	// repeat version 3 and 4 from its own start at 2).
	stale, v, err := output(t, alloc, "d", cfg(dir, ""))
	require.NoError(t, err)
	require.Equal(t, int64(2), v)
	require.NoError(t, deliver(t, alloc, sink, 4, at, []change{{3, "c", 1}}))
	require.NoError(t, deliver(t, alloc, stale, 3, at, []change{{3, "c", 1}}))
	err = deliver(t, alloc, stale, 5, at, []change{{3, "c", 1}, {5, "e", 1}})
	require.ErrorContains(t, err, "another writer moved this output's position: sluice-p-t-d is at 4")
	require.NotErrorIs(t, err, connectors.ErrFatal, "reopening resumes")
	require.NoError(t, stale.Close())
	require.NoError(t, sink.Close())

	// Uncommitted writes are dropped by Close.
	sink, v, err = output(t, alloc, "d", cfg(dir, ""))
	require.NoError(t, err)
	require.Equal(t, int64(4), v)
	rec := changes(alloc, outSchema, change{9, "z", 1})
	require.NoError(t, sink.Write(ctx, connectors.ChangeBatch{Record: rec, Version: 5, Time: at}))
	rec.Release()
	require.NoError(t, sink.Close())

	require.Equal(t, []string{"1|a|i|1", "2|b|i|1", "3|c|i|1"}, readBack(t, dir))
	final, err := dlog.LoadLatest(ctx, st)
	require.NoError(t, err)
	require.ElementsMatch(t, dataFiles(t, dir), keys(final.Files), "no file left behind")
}

// TestOutputTruncate: truncate empties an existing table at the output's
// first open only (the txn it commits says the open happened), and
// replaces a table whose columns differ.
func TestOutputTruncate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	at := time.UnixMicro(1)

	other, _, err := output(t, alloc, "other", cfg(dir, ""))
	require.NoError(t, err)
	require.NoError(t, deliver(t, alloc, other, 1, at, []change{{1, "a", 1}}))

	tr, v, err := output(t, alloc, "tr", cfg(dir, `"mode": "truncate"`))
	require.NoError(t, err)
	require.Equal(t, int64(-1), v)
	require.Empty(t, readBack(t, dir))
	require.NoError(t, tr.Close())

	// Written after the truncation: a reopen (crash and retry) keeps it.
	require.NoError(t, deliver(t, alloc, other, 2, at, []change{{2, "b", 1}}))
	require.NoError(t, other.Close())
	tr, v, err = output(t, alloc, "tr", cfg(dir, `"mode": "truncate"`))
	require.NoError(t, err)
	require.Equal(t, int64(-1), v)
	require.NoError(t, deliver(t, alloc, tr, 4, at, []change{{4, "d", 1}}))
	require.NoError(t, tr.Close())
	require.Equal(t, []string{"2|b|i|1", "4|d|i|1"}, readBack(t, dir))

	// A table of other columns: append refuses it, truncate replaces it.
	dir2 := filepath.Join(t.TempDir(), "foreign")
	d, err := fixture.NewDelta(dir2, fixture.Schema("x INT"))
	require.NoError(t, err)
	data, err := fixture.ParquetBytes(fixture.Int64s("x", 1))
	require.NoError(t, err)
	_, err = d.Commit([][]byte{data})
	require.NoError(t, err)
	_, _, err = output(t, alloc, "tr", cfg(dir2, ""))
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.ErrorContains(t, err, "has the columns (x integer), but the output writes (id long, name string, __feldera_op string, __feldera_ts long)")
	tr, _, err = output(t, alloc, "tr", cfg(dir2, `"mode": "truncate"`))
	require.NoError(t, err)
	require.NoError(t, deliver(t, alloc, tr, 1, at, []change{{1, "a", 1}}))
	require.NoError(t, tr.Close())
	require.Equal(t, []string{"1|a|i|1"}, readBack(t, dir2))
}

// TestOutputErrorIfExists: a table this output did not create is a
// fatal error; its own table (created, possibly before a crash) is not.
func TestOutputErrorIfExists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	sink, v, err := output(t, alloc, "e", cfg(dir, `"mode": "error_if_exists"`))
	require.NoError(t, err)
	require.Equal(t, int64(-1), v)
	require.NoError(t, sink.Close())
	sink, v, err = output(t, alloc, "e", cfg(dir, `"mode": "error_if_exists"`))
	require.NoError(t, err, "the output's own table")
	require.Equal(t, int64(-1), v)
	require.NoError(t, deliver(t, alloc, sink, 0, time.UnixMicro(1), []change{{1, "a", 1}}))
	require.NoError(t, sink.Close())

	_, _, err = output(t, alloc, "other", cfg(dir, `"mode": "error_if_exists"`))
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.ErrorContains(t, err, "mode error_if_exists, and a Delta table exists at "+dir+" (version 1)")
}

// TestOutputCheckpoints writes a log checkpoint every checkpoint_interval
// versions; the table reads the same from it.
func TestOutputCheckpoints(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	sink, _, err := output(t, alloc, "c", cfg(dir, `"checkpoint_interval": 2`))
	require.NoError(t, err)
	var want []string
	for v := int64(0); v < 5; v++ {
		require.NoError(t, deliver(t, alloc, sink, v, time.UnixMicro(7), []change{{v, "x", 1}}))
		want = append(want, fmt.Sprintf("%d|x|i|7", v))
	}
	require.NoError(t, sink.Close())
	st, err := dlog.NewStorage(context.Background(), dir, delta.OutputConfig{}.Settings)
	require.NoError(t, err)
	cp, err := dlog.LastCheckpointVersion(context.Background(), st)
	require.NoError(t, err)
	require.Equal(t, int64(4), cp)
	require.Equal(t, want, readBack(t, dir))
	sink, v, err := output(t, alloc, "c", cfg(dir, ""))
	require.NoError(t, err)
	require.Equal(t, int64(4), v)
	require.NoError(t, sink.Close())
}

func TestOutputConfigErrors(t *testing.T) {
	check := func(cfg string, sc *arrow.Schema) string {
		reg := connectors.NewRegistry()
		require.NoError(t, reg.RegisterSink("delta_table_output", delta.NewOutput))
		c := &pipeline.Connector{Name: "c", Transport: pipeline.Transport{Name: "delta_table_output", Config: json.RawMessage(cfg)}}
		if err := reg.CheckConnector(&pipeline.Table{Name: "t"}, c, sc); err != nil {
			return err.Error()
		}
		return ""
	}
	for _, tc := range []struct{ name, cfg, want string }{
		{"nothing", `{}`, "transport.config.uri: required"},
		{"bad mode", `{"uri": "/t", "mode": "overwrite"}`, `transport.config.mode: want append, truncate or error_if_exists, got "overwrite"`},
		{"uri scheme", `{"uri": "gs://b/t"}`, `transport.config.uri: want a local path, file:// or s3://, got "gs://b/t"`},
		{"retention", `{"uri": "/t", "log_retention_duration": "30 days"}`, `transport.config.log_retention_duration: want "interval <N> <unit>" (unit: nanosecond[s] ... week[s]), got "30 days"`},
		{"threads", `{"uri": "/t", "threads": 0}`, "transport.config.threads: must be at least 1"},
		{"unknown field", `{"uri": "/t", "update_mode": "merge"}`, `transport.config: json: unknown field "update_mode"`},
		{"s3 keys", `{"uri": "s3://b/t", "aws_access_key_id": "k"}`, "transport.config.aws_secret_access_key: aws_access_key_id and aws_secret_access_key go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, check(tc.cfg, outSchema))
		})
	}
	require.Empty(t, check(`{"uri": "s3://b/t", "mode": "truncate", "checkpoint_interval": 0, "log_retention_duration": "interval 7 days", "enable_expired_log_cleanup": false, "max_retries": 3, "threads": 1, "region": "us-east-1"}`, outSchema))
	require.Contains(t, check(`{"uri": "/t"}`, fixture.Schema("__feldera_op VARCHAR")), "clashes with the change-log column")
}

// TestOutputS3 writes to an S3 bucket (versitygw, which implements
// conditional writes) and reads the table back.
func TestOutputS3(t *testing.T) {
	settings := fixture.Versitygw(t, "lake")
	s3cfg, err := json.Marshal(settings)
	require.NoError(t, err)
	c := fmt.Sprintf(`{"uri": "s3://lake/out", %s`, strings.TrimPrefix(string(s3cfg), "{"))
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	sink, v, err := output(t, alloc, "s", c)
	require.NoError(t, err)
	require.Equal(t, int64(-1), v)
	require.NoError(t, deliver(t, alloc, sink, 1, time.UnixMicro(2), []change{{1, "a", 1}, {2, "b", 1}}))
	require.NoError(t, deliver(t, alloc, sink, 1, time.UnixMicro(2), []change{{1, "a", 1}, {2, "b", 1}}))
	require.NoError(t, deliver(t, alloc, sink, 2, time.UnixMicro(3), []change{{1, "a", -1}}))
	require.NoError(t, sink.Close())
	sc := fixture.Schema("id BIGINT", "name VARCHAR", "__feldera_op VARCHAR", "__feldera_ts BIGINT")
	d := read(t, c[:len(c)-1]+`, "mode": "snapshot"}`, sc, nil, 0)
	sort.Strings(d.Rows)
	require.Equal(t, []string{"1|a|d|3|+1", "1|a|i|2|+1", "2|b|i|2|+1"}, d.Rows)
}

// BenchmarkOutputFlights writes the first 1,000,000 rows of
// flights-3m.parquet through delta_table_output (one commit) and, for
// comparison, with a plain pqarrow Parquet write of the same batches:
//
//	go test -run '^$' -bench OutputFlights -benchtime 3x ./connectors/delta/
func BenchmarkOutputFlights(b *testing.B) {
	path, err := fixture.SharedData("flights-3m.parquet")
	if err != nil {
		b.Skip(err)
	}
	ctx := context.Background()
	var recs []arrow.RecordBatch
	var rows int64
	require.NoError(b, fixture.ReadParquet(ctx, path, 64<<10, func(rec arrow.RecordBatch) error {
		if rows >= 1_000_000 {
			return nil
		}
		if rows+rec.NumRows() > 1_000_000 {
			rec = rec.NewSlice(0, 1_000_000-rows)
			defer rec.Release()
		}
		rec = utf8(b, rec) // as the table's VARCHAR columns are
		recs = append(recs, rec)
		rows += rec.NumRows()
		return nil
	}))
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	sc := arrow.NewSchema(recs[0].Schema().Fields(), nil)
	// The change batches: the rows with weight +1.
	var changeRecs []arrow.RecordBatch
	for _, r := range recs {
		wb := array.NewInt64Builder(memory.DefaultAllocator)
		for range r.NumRows() {
			wb.Append(1)
		}
		w := wb.NewArray()
		wb.Release()
		changeRecs = append(changeRecs, array.NewRecordBatch(pipeline.WithWeight(sc), append(r.Columns(), w), r.NumRows()))
		w.Release()
	}
	defer func() {
		for _, r := range changeRecs {
			r.Release()
		}
	}()
	b.Run("delta_table_output", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			dir := b.TempDir()
			sink, err := delta.NewOutput(connectors.SinkParams{Pipeline: "p", Table: "flights", Connector: "out",
				Config: json.RawMessage(fmt.Sprintf(`{"uri": %q}`, dir)), Schema: sc})
			require.NoError(b, err)
			_, err = sink.Open(ctx)
			require.NoError(b, err)
			for _, r := range changeRecs {
				require.NoError(b, sink.Write(ctx, connectors.ChangeBatch{Record: r, Version: 1, Time: time.Now()}))
			}
			require.NoError(b, sink.Commit(ctx, 1))
			require.NoError(b, sink.Close())
		}
		b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("pqarrow", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			f, err := os.Create(filepath.Join(b.TempDir(), "flights.parquet"))
			require.NoError(b, err)
			w, err := pqarrow.NewFileWriter(sc, f, dlog.WriterProperties(), pqarrow.DefaultWriterProps())
			require.NoError(b, err)
			for _, r := range recs {
				require.NoError(b, w.WriteBuffered(r))
			}
			require.NoError(b, w.Close())
		}
		b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}

// utf8 returns rec with its large_utf8 columns cast to utf8; the caller
// releases it.
func utf8(b *testing.B, rec arrow.RecordBatch) arrow.RecordBatch {
	fields := rec.Schema().Fields()
	cols := make([]arrow.Array, len(fields))
	for i, c := range rec.Columns() {
		if c.DataType().ID() == arrow.LARGE_STRING {
			fields[i].Type = arrow.BinaryTypes.String
			var err error
			cols[i], err = compute.CastArray(context.Background(), c, compute.SafeCastOptions(arrow.BinaryTypes.String))
			require.NoError(b, err)
			defer cols[i].Release()
		} else {
			cols[i] = c
		}
	}
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, rec.NumRows())
}
