package format_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors/format"
	"github.com/sluicehq/sluice/internal/fixture"
)

// TestParquetStartRow opens a part of flights-3m.parquet (row groups of
// 131,072 rows, the last one smaller) at many start rows, including ones
// at and around group boundaries, and checks that reading from there
// returns exactly the rows after the start. A reader that skipped the
// small last group as if it came before the start failed this.
func TestParquetStartRow(t *testing.T) {
	parts, err := fixture.SplitParquet(context.Background(), fixture.Shared(t, "flights-3m.parquet"), 6)
	require.NoError(t, err)
	part := parts[0]
	pf, err := file.NewParquetReader(bytes.NewReader(part))
	require.NoError(t, err)
	last := pf.MetaData().RowGroup(pf.NumRowGroups() - 1).NumRows()
	require.Less(t, last, pf.MetaData().RowGroup(0).NumRows(), "the test needs a smaller last row group")
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "date", Type: &arrow.TimestampType{Unit: arrow.Microsecond}, Nullable: true},
		{Name: "delay", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "origin", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
	rows := func(start int64) []string {
		pq, err := format.OpenParquet(context.Background(), bytes.NewReader(part), schema, memory.DefaultAllocator, 10_000, start)
		require.NoError(t, err)
		defer pq.Close()
		var out []string
		for {
			rec, err := pq.Next(context.Background())
			if errors.Is(err, io.EOF) {
				return out
			}
			require.NoError(t, err)
			for i := range int(rec.NumRows()) {
				out = append(out, fixture.Row(rec, i, 3))
			}
			rec.Release()
			require.Equal(t, start+int64(len(out)), pq.Row())
		}
	}
	all := rows(0)
	require.Len(t, all, 500_000)
	for _, start := range []int64{1, last - 1, last, last + 1, 130_000, 131_071, 131_072, 131_073, 262_144, 400_000, 499_999, 500_000} {
		got := rows(start)
		require.Equal(t, len(all)-int(start), len(got), "from row %d", start)
		require.Equal(t, all[start:], append([]string{}, got...), "from row %d", start)
	}
}
