package file_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/file"
	"github.com/sluicehq/sluice/connectors/format"
	"github.com/sluicehq/sluice/internal/fixture"
	"github.com/sluicehq/sluice/pipeline"
)

var outSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "price", Type: &arrow.Decimal128Type{Precision: 10, Scale: 2}, Nullable: true},
	{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond}, Nullable: true},
}, nil)

// batch builds a change batch from insert_delete JSON lines.
func batch(t *testing.T, alloc memory.Allocator, lines string) arrow.RecordBatch {
	t.Helper()
	p, err := format.NewParser(&pipeline.Format{Name: "json", Config: json.RawMessage(`{"update_format": "insert_delete"}`)}, outSchema)
	require.NoError(t, err)
	rows := format.NewRows(alloc, outSchema)
	defer rows.Release()
	require.Empty(t, p.Parse([]byte(lines), 0, rows))
	return rows.NewRecordBatch()
}

func newOutput(t *testing.T, path string, f *pipeline.Format) connectors.Sink {
	t.Helper()
	cfg, _ := json.Marshal(file.OutputConfig{Path: path})
	s, err := file.NewOutput(connectors.SinkParams{Endpoint: "t.out", Config: cfg, Format: f, Schema: outSchema})
	require.NoError(t, err)
	return s
}

// versions are the changes of three table versions.
var versions = []string{
	`{"insert": {"id": 1, "name": "a", "price": "1.50", "ts": "2024-01-02 03:04:05.123456"}}
{"insert": {"id": 2, "name": null, "price": null, "ts": null}}
`,
	`{"insert": {"id": 3, "name": "c \"q\"\n", "price": "-0.01", "ts": "1969-12-31 23:59:59"}}
`,
	`{"delete": {"id": 1, "name": "a", "price": "1.50", "ts": "2024-01-02 03:04:05.123456"}}
{"insert": {"id": 4, "name": "", "price": "99999999.99", "ts": "2038-01-19 03:14:08"}}
`,
}

func write(t *testing.T, s connectors.Sink, alloc memory.Allocator, v int) {
	t.Helper()
	rec := batch(t, alloc, versions[v])
	defer rec.Release()
	require.NoError(t, s.Write(context.Background(), connectors.ChangeBatch{Record: rec, Version: int64(v)}))
}

// readBack reads the output with file_input and returns its rows with
// their weights, sorted.
func readBack(t *testing.T, path string, f *pipeline.Format) []string {
	t.Helper()
	if f == nil || (f.Name == "json" && len(f.Config) == 0) {
		// The output's default update_format, which is not the input's.
		f = &pipeline.Format{Name: "json", Config: json.RawMessage(`{"update_format": "insert_delete"}`)}
	}
	cfg, _ := json.Marshal(file.Config{Path: path})
	d := fixture.ReadSource(t, file.New, connectors.Params{Config: cfg, Format: f, Schema: outSchema, BatchSize: 100}, nil, 0, true)
	require.Empty(t, d.Errors)
	sort.Strings(d.Rows)
	return d.Rows
}

// expected is what versions[:n] hold as changes, read back.
func expected(t *testing.T, n int) []string {
	alloc := memory.NewGoAllocator()
	var out []string
	for v := range n {
		rec := batch(t, alloc, versions[v])
		for i := range int(rec.NumRows()) {
			w := rec.Column(4).GetOneForMarshal(i).(int64)
			sign := "|+1"
			if w < 0 {
				sign = "|-1"
			}
			out = append(out, fixture.Row(rec, i, 4)+sign)
		}
		rec.Release()
	}
	sort.Strings(out)
	return out
}

func TestOutputCommitsAndReadBack(t *testing.T) {
	jsonFmt := &pipeline.Format{Name: "json"}
	path := filepath.Join(t.TempDir(), "out.json")
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	ctx := context.Background()

	s := newOutput(t, path, jsonFmt)
	require.Equal(t, connectors.ExactlyOnce, s.(connectors.Guaranteed).Guarantee())
	delivered, err := s.Open(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(-1), delivered)
	for v := range 3 {
		write(t, s, alloc, v)
		require.NoError(t, s.Commit(ctx, int64(v)))
	}
	bytes, encErrs := s.(connectors.SinkMetrics).Transmitted()
	require.Zero(t, encErrs)
	require.NoError(t, s.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), bytes)
	require.Equal(t, 5, strings.Count(string(data), "\n"))

	require.Equal(t, expected(t, 3), readBack(t, path, jsonFmt))

	// Reopen: the position is the last commit.
	s = newOutput(t, path, jsonFmt)
	delivered, err = s.Open(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(2), delivered)
	require.NoError(t, s.Close())
}

func TestOutputCrashBetweenDataAndPosition(t *testing.T) {
	for _, tt := range []struct {
		name string
		f    *pipeline.Format
	}{
		{name: "json", f: &pipeline.Format{Name: "json"}},
		{name: "debezium", f: &pipeline.Format{Name: "json", Config: json.RawMessage(`{"update_format": "debezium"}`)}},
		{name: "csv", f: &pipeline.Format{Name: "csv"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out")
			alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer alloc.AssertSize(t, 0)
			ctx := context.Background()

			s := newOutput(t, path, tt.f)
			_, err := s.Open(ctx)
			require.NoError(t, err)
			write(t, s, alloc, 0)
			require.NoError(t, s.Commit(ctx, 0))
			committed, err := os.ReadFile(path)
			require.NoError(t, err)
			pos, err := os.ReadFile(path + file.PositionSuffix)
			require.NoError(t, err)

			// Version 1 reaches the file, then the worker dies before the
			// position file is replaced: simulate it by committing and
			// putting the old position back (the sink is abandoned, not
			// closed, as a killed process leaves it).
			write(t, s, alloc, 1)
			require.NoError(t, s.Commit(ctx, 1))
			require.NoError(t, os.WriteFile(path+file.PositionSuffix, pos, 0o644))
			grown, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Greater(t, len(grown), len(committed))

			// A new worker: the file is truncated to version 0's bytes and
			// delivery resumes after version 0.
			s2 := newOutput(t, path, tt.f)
			delivered, err := s2.Open(ctx)
			require.NoError(t, err)
			require.Equal(t, int64(0), delivered)
			now, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, string(committed), string(now))
			write(t, s2, alloc, 1)
			require.NoError(t, s2.Commit(ctx, 1))
			write(t, s2, alloc, 2)
			require.NoError(t, s2.Commit(ctx, 2))
			require.NoError(t, s2.Close())
			final, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, string(grown), string(final[:len(grown)]), "no duplicate lines")

			if tt.name != "csv" {
				require.Equal(t, expected(t, 3), readBack(t, path, tt.f))
			}
		})
	}
}

func TestOutputCloseDropsUncommitted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.json")
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	ctx := context.Background()
	s := newOutput(t, path, nil)
	_, err := s.Open(ctx)
	require.NoError(t, err)
	write(t, s, alloc, 0)
	require.NoError(t, s.Commit(ctx, 0))
	write(t, s, alloc, 1) // never committed
	require.NoError(t, s.Close())
	require.Equal(t, expected(t, 1), readBack(t, path, nil))
}

func TestOutputParquet(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "parts")
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	ctx := context.Background()
	pq := &pipeline.Format{Name: "parquet"}

	s := newOutput(t, dir, pq)
	delivered, err := s.Open(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(-1), delivered)
	write(t, s, alloc, 0)
	require.NoError(t, s.Commit(ctx, 0))
	require.NoError(t, s.Commit(ctx, 1)) // no changes: an empty part
	write(t, s, alloc, 2)                // never committed: a crash
	s2 := newOutput(t, dir, pq)
	delivered, err = s2.Open(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), delivered)
	require.NoError(t, s.Close())
	write(t, s2, alloc, 2)
	require.NoError(t, s2.Commit(ctx, 2))
	require.NoError(t, s2.Close())

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.Equal(t, []string{file.PartName(0), file.PartName(1), file.PartName(2)}, names)

	// Each part reads back with file_input (the weight column is not read
	// by file_input: its rows are inserts).
	rows := readBack(t, filepath.Join(dir, file.PartName(0)), pq)
	require.Equal(t, expected(t, 1), rows)
	require.Empty(t, readBack(t, filepath.Join(dir, file.PartName(1)), pq))
	require.Len(t, readBack(t, filepath.Join(dir, file.PartName(2)), pq), 2)
}

func TestNewOutputErrors(t *testing.T) {
	tests := []struct {
		name   string
		config string
		format *pipeline.Format
		want   string
	}{
		{name: "no path", config: `{}`, want: "path"},
		{name: "unknown field", config: `{"path": "x", "bogus": 1}`, want: "bogus"},
		{name: "bad update_format", config: `{"path": "x"}`, format: &pipeline.Format{Name: "json", Config: json.RawMessage(`{"update_format": "nope"}`)}, want: "update_format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := file.NewOutput(connectors.SinkParams{Config: json.RawMessage(tt.config), Format: tt.format, Schema: outSchema})
			require.ErrorContains(t, err, tt.want)
		})
	}
}
