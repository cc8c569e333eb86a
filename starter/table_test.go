package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
)

var tableSchema = arrow.NewSchema([]arrow.Field{
	{Name: "name", Type: arrow.BinaryTypes.String},
	{Name: "n", Type: arrow.PrimitiveTypes.Int64},
}, nil)

type change struct {
	name   string
	n      int64
	weight int64
}

// writeTable creates pipeline p's table t under root with one commit per
// element of commits, and returns the data files in commit order.
func writeTable(t *testing.T, root string, commits ...[]change) []string {
	ctx := context.Background()
	tbl, err := store.Create(ctx, store.Location(root, "p", "t"), "t", tableSchema, store.Options{CompactMinFiles: -1})
	require.NoError(t, err)
	defer tbl.Close()
	for i, rows := range commits {
		b := array.NewRecordBuilder(memory.DefaultAllocator, pipeline.WithWeight(tableSchema))
		for _, r := range rows {
			b.Field(0).(*array.StringBuilder).Append(r.name)
			b.Field(1).(*array.Int64Builder).Append(r.n)
			b.Field(2).(*array.Int64Builder).Append(r.weight)
		}
		rec := b.NewRecordBatch()
		b.Release()
		_, err := tbl.Commit(ctx, store.Commit{Table: "t", Connector: "c", Number: int64(i + 1),
			Records: []arrow.RecordBatch{rec}, Schema: pipeline.WithWeight(tableSchema)})
		rec.Release()
		require.NoError(t, err)
		time.Sleep(2 * time.Millisecond) // files in commit order by modification time
	}
	_, files, err := tbl.Snapshot(ctx)
	require.NoError(t, err)
	var paths []string
	for _, f := range files {
		p, err := f.FilePath()
		require.NoError(t, err)
		paths = append(paths, filepath.Join(store.Location(root, "p", "t"), p))
	}
	return paths
}

// runSluice runs the command line with args and returns its stdout and
// stderr.
func runSluice(t *testing.T, args ...string) (string, string, error) {
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "stdout"))
	require.NoError(t, err)
	errf, err := os.Create(filepath.Join(dir, "stderr"))
	require.NoError(t, err)
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = out, errf
	root := newRoot()
	root.SetArgs(args)
	runErr := root.Execute()
	os.Stdout, os.Stderr = stdout, stderr
	out.Close()
	errf.Close()
	o, err := os.ReadFile(out.Name())
	require.NoError(t, err)
	e, err := os.ReadFile(errf.Name())
	require.NoError(t, err)
	return string(o), string(e), runErr
}

func TestTableRows(t *testing.T) {
	tests := []struct {
		name    string
		commits [][]change
		want    []string // the full output's lines
		netted  bool     // read whole to net deletes
	}{
		{
			name: "inserts only",
			commits: [][]change{
				{{"a", 1, 1}, {"b", 2, 1}},
				{{"c", 3, 1}, {"a", 1, 1}},
				{{"d", 4, 2}},
			},
			want: []string{`{"n":1,"name":"a"}`, `{"n":2,"name":"b"}`, `{"n":3,"name":"c"}`, `{"n":1,"name":"a"}`, `{"n":4,"name":"d"}`, `{"n":4,"name":"d"}`},
		},
		{
			name: "deletes",
			commits: [][]change{
				{{"a", 1, 1}, {"b", 2, 1}, {"a", 1, 1}},
				{{"c", 3, 1}, {"a", 1, -1}, {"e", 5, -1}},
				{{"b", 2, -1}, {"b", 2, 1}, {"e", 5, 1}, {"e", 5, 1}},
			},
			// a delete cancels the row's earliest insert: a's first, b's
			// (b is inserted again, last); e's delete comes before its
			// inserts and cancels the first
			want:   []string{`{"n":1,"name":"a"}`, `{"n":3,"name":"c"}`, `{"n":2,"name":"b"}`, `{"n":5,"name":"e"}`},
			netted: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeTable(t, root, tt.commits...)
			out, _, err := runSluice(t, "table", "--data-dir", root, "p", "t")
			require.NoError(t, err)
			require.Equal(t, strings.Join(tt.want, "\n")+"\n", out)
			for n := 1; n <= len(tt.want)+1; n++ {
				out, stderr, err := runSluice(t, "table", "--data-dir", root, "p", "t", "--limit", strconv.Itoa(n))
				require.NoError(t, err)
				require.Equal(t, strings.Join(tt.want[:min(n, len(tt.want))], "\n")+"\n", out, "--limit %d", n)
				require.Equal(t, tt.netted, strings.Contains(stderr, "has deletes"), stderr)
			}
		})
	}
}

// TestTableLimitStopsReading: with --limit N a table without deletes is
// read only as far as its N-th row: a data file after it is never opened.
func TestTableLimitStopsReading(t *testing.T) {
	root := t.TempDir()
	files := writeTable(t, root, []change{{"a", 1, 1}, {"b", 2, 1}}, []change{{"c", 3, 1}})
	require.Len(t, files, 2)
	require.NoError(t, os.WriteFile(files[1], []byte("not parquet"), 0o644))
	out, _, err := runSluice(t, "table", "--data-dir", root, "p", "t", "--limit", "2", "--format", "csv")
	require.NoError(t, err)
	require.Equal(t, "name,n\na,1\nb,2\n", out)
	_, _, err = runSluice(t, "table", "--data-dir", root, "p", "t", "--limit", "3")
	require.Error(t, err, "the damaged second file is read for a third row")
}
