package iceberg_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	iceberggo "github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/iceberg"
	"github.com/sluicehq/sluice/internal/fixture"
)

// drainCount reads a snapshot through iceberg_input and returns its rows.
func drainCount(b *testing.B, cfg string) int64 {
	ctx := context.Background()
	src, err := iceberg.New(connectors.Params{Config: json.RawMessage(cfg), Schema: fixture.Schema("id BIGINT"), BatchSize: 4096})
	require.NoError(b, err)
	require.NoError(b, src.Open(ctx, nil))
	defer src.Close()
	var n int64
	for {
		bt, err := src.Read(ctx)
		if errors.Is(err, connectors.ErrEndOfInput) {
			return n
		}
		require.NoError(b, err)
		if bt.Record != nil {
			n += bt.Record.NumRows()
			bt.Record.Release()
		}
	}
}

// BenchmarkSnapshotPositionDeletes reads a snapshot of 270,000 live rows
// twice: from a table of 300,000 appended rows and a merge-on-read
// DELETE of every tenth (a position delete file of 30,000 rows), and
// from a table holding the same 270,000 rows without deletes. It reports
// the ratio of the two read times (ratio-deletes/plain) and the
// milliseconds of each.
func BenchmarkSnapshotPositionDeletes(b *testing.B) {
	ctx := context.Background()
	const rows = 300_000
	all, tenths, kept := idRange(1, rows), []int64{}, []int64{}
	for _, id := range all {
		if id%10 == 0 {
			tenths = append(tenths, id)
		} else {
			kept = append(kept, id)
		}
	}
	t := b
	withDeletes, dbA := sqliteTable(t, b.TempDir(), iceberggo.Properties{"format-version": "2", table.WriteDeleteModeKey: table.WriteModeMergeOnRead})
	withDeletes = appendIDs(t, withDeletes, "id", all...)
	_, err := withDeletes.Delete(ctx, iceberggo.IsIn(iceberggo.Reference("id"), tenths...), nil)
	require.NoError(b, err)
	plain, dbB := sqliteTable(t, b.TempDir(), iceberggo.Properties{"format-version": "2"})
	appendIDs(t, plain, "id", kept...)
	cfg := func(db string) string {
		return fmt.Sprintf(`{"mode": "snapshot", "catalog_type": "sql", "sql.uri": %q, "sql.driver": "sqlite", "table_name": "ns.t"}`, db)
	}
	var dDel, dPlain time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		require.Equal(b, int64(len(kept)), drainCount(b, cfg(dbA)))
		dDel += time.Since(start)
		start = time.Now()
		require.Equal(b, int64(len(kept)), drainCount(b, cfg(dbB)))
		dPlain += time.Since(start)
	}
	b.ReportMetric(float64(dDel)/float64(dPlain), "ratio-deletes/plain")
	b.ReportMetric(float64(dDel.Milliseconds())/float64(b.N), "ms-deletes/op")
	b.ReportMetric(float64(dPlain.Milliseconds())/float64(b.N), "ms-plain/op")
}
