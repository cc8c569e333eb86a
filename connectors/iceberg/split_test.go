package iceberg_test

import (
	"context"
	"fmt"
	"sort"
	"testing"

	iceberggo "github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/fixture"
)

// TestSplitDataFiles writes a format-v2 table whose data files have ten
// row groups each (write.parquet.row-group-limit=10) and a split target
// of one byte (read.split.target-size=1), so iceberg-go plans each data
// file as several scan tasks sharing the file. Every row is read exactly
// once: in a snapshot, and following an append of another such file and
// a merge-on-read DELETE of rows in both files.
func TestSplitDataFiles(t *testing.T) {
	ctx := context.Background()
	tbl, dbPath := sqliteTable(t, t.TempDir(), iceberggo.Properties{
		"format-version":                "2",
		"write.parquet.row-group-limit": "10",
		"read.split.target-size":        "1",
		table.WriteDeleteModeKey:        table.WriteModeMergeOnRead,
	})
	tbl = appendIDs(t, tbl, "id", idRange(1, 100)...)
	first := tbl.CurrentSnapshot().SnapshotID
	tasks, err := tbl.Scan().PlanFiles(ctx)
	require.NoError(t, err)
	require.Len(t, tasks, 10, "one data file of ten row groups, planned as ten tasks")
	for _, task := range tasks {
		require.Equal(t, tasks[0].File.FilePath(), task.File.FilePath())
	}

	tbl = appendIDs(t, tbl, "id", idRange(101, 200)...)
	second := tbl.CurrentSnapshot().SnapshotID
	tbl, err = tbl.Delete(ctx, iceberggo.EqualTo(iceberggo.Reference("id"), int64(55)), nil)
	require.NoError(t, err)
	tbl, err = tbl.Delete(ctx, iceberggo.GreaterThan(iceberggo.Reference("id"), int64(190)), nil)
	require.NoError(t, err)
	last := tbl.CurrentSnapshot().SnapshotID
	pos, _ := deleteFileCounts(t, tbl)
	require.Positive(t, pos, "merge-on-read wrote position delete files")

	base := fmt.Sprintf(`"catalog_type": "sql", "sql.uri": %q, "sql.driver": "sqlite", "table_name": "ns.t"`, dbPath)
	sc := fixture.Schema("id BIGINT")

	// The snapshot of the first append, and the current one.
	var live []int64
	for _, id := range idRange(1, 200) {
		if id != 55 && id <= 190 {
			live = append(live, id)
		}
	}
	for _, tc := range []struct {
		name   string
		option string
		want   []int64
	}{
		{"first append", fmt.Sprintf(`, "snapshot_id": %d`, first), idRange(1, 100)},
		{"current", "", live},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := read(t, `{"mode": "snapshot", `+base+tc.option+"}", sc, nil, 0, true)
			require.True(t, d.EndOfInput)
			sort.Strings(d.Rows)
			require.Equal(t, plusRows(tc.want), d.Rows, "each row exactly once")
		})
	}

	// Follow from the first append to the last DELETE.
	cfg := fmt.Sprintf(`{"mode": "snapshot_and_follow", %s, "snapshot_id": %d, "end_snapshot_id": %d}`, base, first, last)
	c, _, end := readChanges(t, cfg, sc, 7, nil, 0)
	require.True(t, end)
	ones := func(ids []int64, w int64) map[string]int64 {
		m := map[string]int64{}
		for _, id := range ids {
			m[fmt.Sprint(id)] = w
		}
		return m
	}
	require.Equal(t, ones(idRange(1, 100), 1), nonzero(c.net[first]))
	require.Equal(t, ones(idRange(101, 200), 1), nonzero(c.net[second]))
	require.Equal(t, ones(idRange(191, 200), -1), nonzero(c.net[last]))
	require.Equal(t, int64(100+100+1+10), c.rows, "no change record repeated")
}
