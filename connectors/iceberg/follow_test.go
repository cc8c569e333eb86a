package iceberg_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	iceberggo "github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/iceberg"
	"github.com/sluicehq/sluice/internal/fixture"
)

// changes is what a follow read saw: per snapshot id (from each batch's
// checkpoint) the net weight of each row, and the snapshots in the order
// their rows came.
type changes struct {
	net   map[int64]map[string]int64
	order []int64
	rows  int64 // change records, inserts and deletes
}

// readChanges opens a source at cp (resolving it when nil), reads until
// end of input or until it has max change records (0: no limit), and
// returns what it saw and the last checkpoint.
func readChanges(t *testing.T, cfg string, sc *arrow.Schema, batch int, cp connectors.Checkpoint, max int64) (changes, connectors.Checkpoint, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	src, err := iceberg.New(connectors.Params{Config: json.RawMessage(cfg), Schema: sc, BatchSize: batch, Allocator: alloc})
	require.NoError(t, err)
	if cp == nil {
		cp, err = src.(connectors.Resolver).Resolve(ctx)
		require.NoError(t, err)
	}
	require.NoError(t, src.Open(ctx, cp))
	defer src.Close()
	c := changes{net: map[int64]map[string]int64{}}
	for max == 0 || c.rows < max {
		b, err := src.Read(ctx)
		if errors.Is(err, connectors.ErrEndOfInput) {
			return c, cp, true
		}
		require.NoError(t, err)
		cp = b.Checkpoint
		if b.Record == nil {
			continue
		}
		var pos iceberg.Checkpoint
		require.NoError(t, json.Unmarshal(b.Checkpoint, &pos))
		if len(c.order) == 0 || c.order[len(c.order)-1] != pos.SnapshotID {
			c.order = append(c.order, pos.SnapshotID)
		}
		n := int(b.Record.NumCols()) - 1
		for i := range int(b.Record.NumRows()) {
			w := b.Record.Column(n).(*array.Int64).Value(i)
			require.True(t, w == 1 || w == -1, "weight %d", w)
			if c.net[pos.SnapshotID] == nil {
				c.net[pos.SnapshotID] = map[string]int64{}
			}
			c.net[pos.SnapshotID][fixture.Row(b.Record, i, n)] += w
			c.rows++
		}
		b.Record.Release()
	}
	return c, cp, false
}

// nonzero drops the rows whose weight is 0.
func nonzero(m map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// history is a table written step by step with iceberg-go, with a model
// of its rows (id → count) after each snapshot.
type history struct {
	t      *testing.T
	tbl    *table.Table
	rows   map[string]int64
	snaps  []int64
	states []map[string]int64 // the model after each snapshot
}

func (h *history) commit(tbl *table.Table) {
	h.tbl = tbl
	id := tbl.CurrentSnapshot().SnapshotID
	require.NotContains(h.t, h.snaps, id, "a new snapshot")
	h.snaps = append(h.snaps, id)
	h.states = append(h.states, maps.Clone(h.rows))
}

func (h *history) add(ids ...int64) {
	for _, id := range ids {
		h.rows[strconv.FormatInt(id, 10)]++
	}
}

func (h *history) remove(keep func(id int64) bool) {
	for k := range h.rows {
		id, _ := strconv.ParseInt(k, 10, 64)
		if !keep(id) {
			delete(h.rows, k)
		}
	}
}

// diff is the model's change from snapshot i-1 to i.
func (h *history) diff(i int) map[string]int64 {
	out := maps.Clone(h.states[i])
	if i > 0 {
		for k, v := range h.states[i-1] {
			out[k] -= v
		}
	}
	return nonzero(out)
}

// writeHistory commits appends, a filtered overwrite, a copy-on-write
// DELETE and (format v2) a merge-on-read DELETE and an equality delete.
func writeHistory(t *testing.T, version string) (*history, string) {
	ctx := context.Background()
	tbl, dbPath := sqliteTable(t, t.TempDir(), iceberggo.Properties{"format-version": version, table.WriteDeleteModeKey: table.WriteModeCopyOnWrite})
	h := &history{t: t, rows: map[string]int64{}}
	h.add(idRange(1, 5)...)
	h.commit(appendIDs(t, tbl, "id", idRange(1, 5)...))
	h.add(6, 7, 8)
	h.commit(appendIDs(t, h.tbl, "id", 6, 7, 8))

	// Overwrite the rows id <= 2 with 100 and 101: copy-on-write rewrites
	// the first file.
	rec := fixture.Int64s("id", 100, 101)
	rdr, err := array.NewRecordReader(rec.Schema(), []arrow.RecordBatch{rec})
	require.NoError(t, err)
	tbl, err = h.tbl.Overwrite(ctx, rdr, nil, table.WithOverwriteFilter(iceberggo.LessThanEqual(iceberggo.Reference("id"), int64(2))))
	require.NoError(t, err)
	rdr.Release()
	rec.Release()
	h.remove(func(id int64) bool { return id > 2 })
	h.add(100, 101)
	h.commit(tbl)

	tbl, err = h.tbl.Delete(ctx, iceberggo.EqualTo(iceberggo.Reference("id"), int64(7)), nil)
	require.NoError(t, err)
	h.remove(func(id int64) bool { return id != 7 })
	h.commit(tbl)

	if version == "2" {
		tx := h.tbl.NewTransaction()
		require.NoError(t, tx.SetProperties(iceberggo.Properties{table.WriteDeleteModeKey: table.WriteModeMergeOnRead}))
		tbl, err = tx.Commit(ctx)
		require.NoError(t, err)
		tbl, err = tbl.Delete(ctx, iceberggo.EqualTo(iceberggo.Reference("id"), int64(4)), nil)
		require.NoError(t, err)
		h.remove(func(id int64) bool { return id != 4 })
		h.commit(tbl)
		pos, _ := deleteFileCounts(t, tbl)
		require.Positive(t, pos, "merge-on-read wrote a position delete file")

		key := fixture.Int64s("id", 100)
		tx = h.tbl.NewTransaction()
		require.NoError(t, tx.CommitEqualityDeletes(ctx, []int{1}, func(yield func(arrow.RecordBatch, error) bool) { yield(key, nil) }, nil))
		tbl, err = tx.Commit(ctx)
		require.NoError(t, err)
		key.Release()
		h.remove(func(id int64) bool { return id != 100 })
		h.commit(tbl)
	}
	h.add(9, 10)
	h.commit(appendIDs(t, h.tbl, "id", 9, 10))
	return h, dbPath
}

// TestFollow follows tables written with iceberg-go (formats v1 and v2)
// through appends, an overwrite, DELETEs (copy-on-write, and in v2
// merge-on-read position deletes and equality deletes): the net change
// of each snapshot's rows equals the model's change, snapshots come in
// commit order, the weights sum to the final table, end_snapshot_id ends
// input, and a read stopped every few records and resumed from its
// checkpoint sees exactly the same change records.
func TestFollow(t *testing.T) {
	sc := fixture.Schema("id BIGINT")
	for _, version := range []string{"1", "2"} {
		t.Run("v"+version, func(t *testing.T) {
			h, dbPath := writeHistory(t, version)
			last := len(h.snaps) - 1
			base := fmt.Sprintf(`"catalog_type": "sql", "sql.uri": %q, "sql.driver": "sqlite", "table_name": "ns.t"`, dbPath)

			// snapshot_and_follow from the first snapshot to the last.
			cfg := fmt.Sprintf(`{"mode": "snapshot_and_follow", %s, "snapshot_id": %d, "end_snapshot_id": %d}`, base, h.snaps[0], h.snaps[last])
			c, _, end := readChanges(t, cfg, sc, 2, nil, 0)
			require.True(t, end, "end_snapshot_id ends input")
			require.Equal(t, h.snaps, c.order, "snapshots in commit order")
			total := map[string]int64{}
			for i, snap := range h.snaps {
				require.Equal(t, h.diff(i), nonzero(c.net[snap]), "snapshot %d (#%d)", snap, i)
				for k, v := range c.net[snap] {
					total[k] += v
				}
			}
			require.Equal(t, h.states[last], nonzero(total), "the weights sum to the final table")

			// Stopped every 3 change records, resumed from the checkpoint.
			var stepped changes
			stepped.net = map[int64]map[string]int64{}
			var cp connectors.Checkpoint
			for i := 0; ; i++ {
				require.Less(t, i, 1000)
				part, next, end := readChanges(t, cfg, sc, 2, cp, 3)
				stepped.rows += part.rows
				for snap, m := range part.net {
					if stepped.net[snap] == nil {
						stepped.net[snap] = map[string]int64{}
					}
					for k, v := range m {
						stepped.net[snap][k] += v
					}
				}
				cp = next
				if end {
					break
				}
			}
			require.Equal(t, c.rows, stepped.rows, "no change record skipped or repeated")
			for _, snap := range h.snaps {
				require.Equal(t, nonzero(c.net[snap]), nonzero(stepped.net[snap]))
			}

			// follow after the third snapshot, ending at the second last.
			cfg = fmt.Sprintf(`{"mode": "follow", %s, "snapshot_id": %d, "end_snapshot_id": %d}`, base, h.snaps[2], h.snaps[last-1])
			c, _, end = readChanges(t, cfg, sc, 100, nil, 0)
			require.True(t, end)
			require.Equal(t, h.snaps[3:last], c.order)
			for i := 3; i < last; i++ {
				require.Equal(t, h.diff(i), nonzero(c.net[h.snaps[i]]))
			}

			// An end before the start is refused when the start is resolved.
			cfg = fmt.Sprintf(`{"mode": "follow", %s, "snapshot_id": %d, "end_snapshot_id": %d}`, base, h.snaps[3], h.snaps[1])
			src, err := iceberg.New(connectors.Params{Config: json.RawMessage(cfg), Schema: sc, BatchSize: 10})
			require.NoError(t, err)
			_, err = src.(connectors.Resolver).Resolve(context.Background())
			require.ErrorIs(t, err, connectors.ErrFatal)
			require.ErrorContains(t, err, fmt.Sprintf("end_snapshot_id %d comes before the start snapshot %d", h.snaps[1], h.snaps[3]))
		})
	}
}

// TestFollowPolls follows the current snapshot of a table, commits a new
// append while the source is open, and reads its rows on the next Read
// (the source reloads the table's metadata from the catalog).
func TestFollowPolls(t *testing.T) {
	defer func(d time.Duration) { iceberg.PollInterval = d }(iceberg.PollInterval)
	iceberg.PollInterval = 10 * time.Millisecond
	ctx := context.Background()
	tbl, dbPath := sqliteTable(t, t.TempDir(), iceberggo.Properties{"format-version": "2"})
	tbl = appendIDs(t, tbl, "id", 1, 2)
	cfg := fmt.Sprintf(`{"mode": "follow", "catalog_type": "sql", "sql.uri": %q, "sql.driver": "sqlite", "table_name": "ns.t"}`, dbPath)
	src, err := iceberg.New(connectors.Params{Config: json.RawMessage(cfg), Schema: fixture.Schema("id BIGINT"), BatchSize: 10})
	require.NoError(t, err)
	require.False(t, src.(interface{ Bounded() bool }).Bounded())
	require.NoError(t, src.Open(ctx, nil))
	defer src.Close()

	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = src.Read(tctx)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "no new snapshot: Read waits")

	tbl = appendIDs(t, tbl, "id", 3)
	var got []string
	for len(got) == 0 {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		b, err := src.Read(tctx)
		cancel()
		require.NoError(t, err)
		if b.Record != nil {
			for i := range int(b.Record.NumRows()) {
				got = append(got, fixture.Row(b.Record, i, 2))
			}
			b.Record.Release()
		}
		var cp iceberg.Checkpoint
		require.NoError(t, json.Unmarshal(b.Checkpoint, &cp))
		require.Equal(t, tbl.CurrentSnapshot().SnapshotID, cp.SnapshotID)
	}
	require.Equal(t, []string{"3|1"}, got)
}

// TestLineitemFollow follows the Spark-written lineitem table from its
// first snapshot (the append) through the copy-on-write DELETE: the
// changes net to the 51,793 rows of the current snapshot, row for row.
func TestLineitemFollow(t *testing.T) {
	dir := fixture.Shared(t, "iceberg/lineitem_iceberg")
	cfg := fmt.Sprintf(`{"mode": "snapshot_and_follow", "metadata_location": %q, "allow_moved_paths": true, "snapshot_id": 7817332053627255703, "end_snapshot_id": 2354745328521181395}`, dir)
	d := read(t, cfg, lineitem, nil, 0, false)
	require.True(t, d.EndOfInput)
	require.Equal(t, int64(51793), d.Hash.Count)
	require.Equal(t, int64(60175+60175+51793), d.Hash.Records, "the append, then the rewritten file's rows out and the kept rows in")
	want := read(t, fmt.Sprintf(`{"mode": "snapshot", "metadata_location": %q, "allow_moved_paths": true}`, dir), lineitem, nil, 0, false)
	require.Equal(t, want.Hash.Sum, d.Hash.Sum, "the same rows as the current snapshot")
}

// TestEndSnapshotChecked rolls a table back to its first snapshot and
// appends again, leaving the rolled-back snapshot on another branch of
// history. An end_snapshot_id the table lacks, or on that branch (not a
// descendant of the start), is fatal when the start is resolved and when
// a checkpoint is opened, naming end_snapshot_id: follow would never
// reach it. An end on the branch that descends from the start is fatal
// when following reaches the fork. An end on the start's history still
// reads to it.
func TestEndSnapshotChecked(t *testing.T) {
	ctx := context.Background()
	tbl, dbPath := sqliteTable(t, t.TempDir(), iceberggo.Properties{"format-version": "2"})
	tbl = appendIDs(t, tbl, "id", 1)
	root := tbl.CurrentSnapshot().SnapshotID
	tbl = appendIDs(t, tbl, "id", 2)
	tbl = appendIDs(t, tbl, "id", 3)
	branch := tbl.CurrentSnapshot().SnapshotID
	tx := tbl.NewTransaction()
	require.NoError(t, tx.RollbackToSnapshot(root))
	tbl, err := tx.Commit(ctx)
	require.NoError(t, err)
	tbl = appendIDs(t, tbl, "id", 4)
	cur := tbl.CurrentSnapshot().SnapshotID
	require.NotNil(t, tbl.SnapshotByID(branch), "the rolled-back snapshot is kept")
	require.Equal(t, root, *tbl.CurrentSnapshot().ParentSnapshotID)

	sc := fixture.Schema("id BIGINT")
	base := fmt.Sprintf(`"catalog_type": "sql", "sql.uri": %q, "sql.driver": "sqlite", "table_name": "ns.t"`, dbPath)
	missing := int64(1234567)
	for _, tc := range []struct {
		name  string
		start int64
		end   int64
		want  string
	}{
		{"missing", root, missing, fmt.Sprintf("has no snapshot end_snapshot_id %d", missing)},
		{"another branch", cur, branch, fmt.Sprintf("end_snapshot_id %d does not descend from the start snapshot %d", branch, cur)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fmt.Sprintf(`{"mode": "follow", %s, "snapshot_id": %d, "end_snapshot_id": %d}`, base, tc.start, tc.end)
			src, err := iceberg.New(connectors.Params{Config: json.RawMessage(cfg), Schema: sc, BatchSize: 10})
			require.NoError(t, err)
			cp, err := src.(connectors.Resolver).Resolve(ctx)
			require.ErrorIs(t, err, connectors.ErrFatal)
			require.ErrorContains(t, err, tc.want)

			// A checkpoint written before (say, by a config without
			// end_snapshot_id) is refused when opened.
			cp, _ = json.Marshal(iceberg.Checkpoint{Phase: iceberg.PhaseFollow, SnapshotID: tc.start, Done: true})
			src, err = iceberg.New(connectors.Params{Config: json.RawMessage(cfg), Schema: sc, BatchSize: 10})
			require.NoError(t, err)
			err = src.Open(ctx, cp)
			require.ErrorIs(t, err, connectors.ErrFatal)
			require.ErrorContains(t, err, tc.want)
		})
	}

	// From before the fork to the branch: the end descends from the start,
	// but the history followed (the current snapshot's) goes another way.
	// Reading stops at the fork with a fatal error naming end_snapshot_id.
	cfg := fmt.Sprintf(`{"mode": "follow", %s, "snapshot_id": %d, "end_snapshot_id": %d}`, base, root, branch)
	src, err := iceberg.New(connectors.Params{Config: json.RawMessage(cfg), Schema: sc, BatchSize: 10})
	require.NoError(t, err)
	require.NoError(t, src.Open(ctx, nil))
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = src.Read(tctx)
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.ErrorContains(t, err, fmt.Sprintf("the next snapshot to follow, %d, is not on the history of end_snapshot_id %d", cur, branch))
	require.NoError(t, src.Close())

	// An end on the start's history is read to, and ends input.
	cfg = fmt.Sprintf(`{"mode": "follow", %s, "snapshot_id": %d, "end_snapshot_id": %d}`, base, root, cur)
	c, _, end := readChanges(t, cfg, sc, 10, nil, 0)
	require.True(t, end)
	require.Equal(t, []int64{cur}, c.order)
	require.Equal(t, map[string]int64{"4": 1}, nonzero(c.net[cur]))
}
