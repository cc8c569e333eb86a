package iceberg_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sort"
	"strconv"
	"testing"

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

// idRange returns the ids lo..hi.
func idRange(lo, hi int64) []int64 {
	var out []int64
	for i := lo; i <= hi; i++ {
		out = append(out, i)
	}
	return out
}

// plusRows renders ids as the rows of a one-column read, weight +1, sorted as strings.
func plusRows(ids []int64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = strconv.FormatInt(id, 10) + "|+1"
	}
	sort.Strings(out)
	return out
}

// deleteFileCounts plans the table's current snapshot and counts the
// position and equality delete files its data files carry.
func deleteFileCounts(t *testing.T, tbl *table.Table) (pos, eq int) {
	tasks, err := tbl.Scan().PlanFiles(context.Background())
	require.NoError(t, err)
	for _, task := range tasks {
		pos += len(task.DeleteFiles)
		eq += len(task.EqualityDeleteFiles)
		require.Empty(t, task.DeletionVectorFiles)
	}
	return pos, eq
}

// TestPositionDeletes writes a format-v2 table with iceberg-go: two
// appends, two merge-on-read DELETEs (position delete files) and a later
// append. The rows read are the appended ids minus those the DELETE
// predicates match, at every snapshot, and resuming after every few
// rows (mid-file, with batches of 16) reads the same rows.
func TestPositionDeletes(t *testing.T) {
	ctx := context.Background()
	tbl, dbPath := sqliteTable(t, t.TempDir(), iceberggo.Properties{"format-version": "2", table.WriteDeleteModeKey: table.WriteModeMergeOnRead})
	tbl = appendIDs(t, tbl, "id", idRange(1, 300)...)
	tbl = appendIDs(t, tbl, "id", idRange(301, 600)...)
	appended := tbl.CurrentSnapshot().SnapshotID
	var sevens []int64
	for i := int64(7); i <= 600; i += 7 {
		sevens = append(sevens, i)
	}
	tbl, err := tbl.Delete(ctx, iceberggo.IsIn(iceberggo.Reference("id"), sevens...), nil)
	require.NoError(t, err)
	tbl, err = tbl.Delete(ctx, iceberggo.GreaterThan(iceberggo.Reference("id"), int64(550)), nil)
	require.NoError(t, err)
	deleted := tbl.CurrentSnapshot().SnapshotID
	tbl = appendIDs(t, tbl, "id", idRange(601, 620)...)
	pos, eq := deleteFileCounts(t, tbl)
	require.GreaterOrEqual(t, pos, 2, "the DELETEs wrote position delete files")
	require.Zero(t, eq)

	live := func(upTo int64, deletes bool) []int64 {
		var out []int64
		for _, id := range idRange(1, upTo) {
			if deletes && id <= 600 && (id%7 == 0 || id > 550) {
				continue
			}
			out = append(out, id)
		}
		return out
	}
	cfg := fmt.Sprintf(`{"mode": "snapshot", "catalog_type": "sql", "sql.uri": %q, "sql.driver": "sqlite", "table_name": "ns.t"`, dbPath)
	for _, tc := range []struct {
		name   string
		option string
		want   []int64
	}{
		{"before the deletes", fmt.Sprintf(`, "snapshot_id": %d`, appended), live(600, false)},
		{"after the deletes", fmt.Sprintf(`, "snapshot_id": %d`, deleted), live(600, true)},
		{"current", "", live(620, true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := read(t, cfg+tc.option+"}", fixture.Schema("id BIGINT"), nil, 0, true)
			require.True(t, d.EndOfInput)
			sort.Strings(d.Rows)
			require.Equal(t, plusRows(tc.want), d.Rows)
			p := connectors.Params{Config: json.RawMessage(cfg + tc.option + "}"), Schema: fixture.Schema("id BIGINT"), BatchSize: 16}
			steps := fixture.ReadInSteps(t, iceberg.New, p, 37, true)
			sort.Strings(steps.Rows)
			require.Equal(t, d.Rows, steps.Rows, "resumed reads neither skip nor repeat rows")
		})
	}
}

// idNameSchema is the table schema of TestEqualityDeletes.
var idNameSchema = iceberggo.NewSchema(0,
	iceberggo.NestedField{ID: 1, Name: "id", Type: iceberggo.PrimitiveTypes.Int64},
	iceberggo.NestedField{ID: 2, Name: "name", Type: iceberggo.PrimitiveTypes.String})

// idNames builds a record of (id, name) rows; names "" are NULL.
func idNames(ids []int64, names []string) arrow.RecordBatch {
	sc := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true}, {Name: "name", Type: arrow.BinaryTypes.String, Nullable: true}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	for i := range ids {
		b.Field(0).(*array.Int64Builder).Append(ids[i])
		if names[i] == "" {
			b.Field(1).AppendNull()
		} else {
			b.Field(1).(*array.StringBuilder).Append(names[i])
		}
	}
	return b.NewRecordBatch()
}

// project keeps rec's columns named cols.
func project(rec arrow.RecordBatch, cols ...string) arrow.RecordBatch {
	var fields []arrow.Field
	var arrs []arrow.Array
	for _, c := range cols {
		i := rec.Schema().FieldIndices(c)[0]
		fields = append(fields, rec.Schema().Field(i))
		arrs = append(arrs, rec.Column(i))
	}
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), arrs, rec.NumRows())
}

// TestEqualityDeletes writes equality deletes with iceberg-go (on id, on
// name, and on both) between appends, and checks the rows read against a
// model of the Iceberg rule (spec, "Equality Delete Files"): a row is
// deleted by an equality delete committed strictly after it whose
// equality_ids columns equal the row's (NULL equal to NULL). Rows
// appended after a delete with the same key stay. The table is read
// with and without the id column (the key then is read hidden).
func TestEqualityDeletes(t *testing.T) {
	ctx := context.Background()
	tbl, dbPath := sqliteTableOf(t, t.TempDir(), idNameSchema, iceberggo.Properties{"format-version": "2"})
	type row struct {
		id   int64
		name string
		step int
	}
	type del struct {
		ids  []int // equality ids
		rows []row
		step int
	}
	var rows []row
	var dels []del
	step := 0
	appendRows := func(ids []int64, names []string) {
		step++
		rec := idNames(ids, names)
		defer rec.Release()
		rdr, err := array.NewRecordReader(rec.Schema(), []arrow.RecordBatch{rec})
		require.NoError(t, err)
		defer rdr.Release()
		tbl, err = tbl.Append(ctx, rdr, nil)
		require.NoError(t, err)
		for i := range ids {
			rows = append(rows, row{ids[i], names[i], step})
		}
	}
	deleteRows := func(eqIDs []int, ids []int64, names []string) {
		step++
		full := idNames(ids, names)
		defer full.Release()
		var cols []string
		for _, id := range eqIDs {
			cols = append(cols, map[int]string{1: "id", 2: "name"}[id])
		}
		rec := project(full, cols...)
		defer rec.Release()
		tx := tbl.NewTransaction()
		require.NoError(t, tx.CommitEqualityDeletes(ctx, eqIDs, func(yield func(arrow.RecordBatch, error) bool) { yield(rec, nil) }, nil))
		var err error
		tbl, err = tx.Commit(ctx)
		require.NoError(t, err)
		d := del{ids: eqIDs, step: step}
		for i := range ids {
			d.rows = append(d.rows, row{ids[i], names[i], step})
		}
		dels = append(dels, d)
	}
	appendRows(idRange(1, 10), []string{"a", "b", "c", "d", "e", "f", "g", "h", "", "j"})
	deleteRows([]int{1}, []int64{2, 3, 5}, []string{"", "", ""})
	appendRows([]int64{2, 3, 11}, []string{"b2", "c2", ""})
	deleteRows([]int{2}, []int64{0, 0}, []string{"j", ""}) // name j, and NULL names (ids 9 and 11)
	deleteRows([]int{1, 2}, []int64{4, 6, 3}, []string{"d", "zzz", "c2"})
	appendRows([]int64{9}, []string{""})
	pos, eq := deleteFileCounts(t, tbl)
	require.Zero(t, pos)
	require.GreaterOrEqual(t, eq, 3)

	var wantBoth, wantNames []string
	for _, r := range rows {
		gone := false
		for _, d := range dels {
			for _, k := range d.rows {
				match := d.step > r.step
				for _, id := range d.ids {
					if id == 1 {
						match = match && k.id == r.id
					} else {
						match = match && k.name == r.name
					}
				}
				gone = gone || match
			}
		}
		if !gone {
			name := r.name
			if name == "" {
				name = "NULL"
			}
			wantBoth = append(wantBoth, fmt.Sprintf("%d|%s|+1", r.id, name))
			wantNames = append(wantNames, name+"|+1")
		}
	}
	sort.Strings(wantBoth)
	sort.Strings(wantNames)
	// By hand: 1 a, 2 b2 (appended after the id delete), 6 f (the (6, zzz)
	// key matches no row), 7 g, 8 h and the last 9 NULL.
	require.Equal(t, []string{"1|a|+1", "2|b2|+1", "6|f|+1", "7|g|+1", "8|h|+1", "9|NULL|+1"}, wantBoth)

	cfg := fmt.Sprintf(`{"mode": "snapshot", "catalog_type": "sql", "sql.uri": %q, "sql.driver": "sqlite", "table_name": "ns.t"}`, dbPath)
	for _, tc := range []struct {
		name   string
		schema *arrow.Schema
		want   []string
	}{
		{"id and name", fixture.Schema("id BIGINT", "name VARCHAR"), wantBoth},
		{"name only", fixture.Schema("name VARCHAR"), wantNames},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := read(t, cfg, tc.schema, nil, 0, true)
			sort.Strings(d.Rows)
			require.Equal(t, tc.want, d.Rows)
			steps := fixture.ReadInSteps(t, iceberg.New, connectors.Params{Config: json.RawMessage(cfg), Schema: tc.schema, BatchSize: 2}, 3, true)
			sort.Strings(steps.Rows)
			require.Equal(t, tc.want, steps.Rows)
		})
	}
}

var _ iter.Seq2[arrow.RecordBatch, error]

// TestDeletionVectorsRefused writes a format-v3 table whose merge-on-read
// DELETE writes a deletion vector: the snapshot before it reads, the one
// after is refused by name rather than read with the deleted row.
func TestDeletionVectorsRefused(t *testing.T) {
	ctx := context.Background()
	tbl, dbPath := sqliteTable(t, t.TempDir(), iceberggo.Properties{"format-version": "3", table.WriteDeleteModeKey: table.WriteModeMergeOnRead})
	tbl = appendIDs(t, tbl, "id", 1, 2, 3)
	appended := tbl.CurrentSnapshot().SnapshotID
	tbl, err := tbl.Delete(ctx, iceberggo.EqualTo(iceberggo.Reference("id"), int64(2)), nil)
	require.NoError(t, err)
	tasks, err := tbl.Scan().PlanFiles(ctx)
	require.NoError(t, err)
	dvs := 0
	for _, task := range tasks {
		dvs += len(task.DeletionVectorFiles)
	}
	require.Positive(t, dvs, "iceberg-go wrote a deletion vector")

	cfg := fmt.Sprintf(`{"mode": "snapshot", "catalog_type": "sql", "sql.uri": %q, "sql.driver": "sqlite", "table_name": "ns.t"`, dbPath)
	d := read(t, cfg+fmt.Sprintf(`, "snapshot_id": %d}`, appended), fixture.Schema("id BIGINT"), nil, 0, true)
	sort.Strings(d.Rows)
	require.Equal(t, []string{"1|+1", "2|+1", "3|+1"}, d.Rows)

	src, err := iceberg.New(connectors.Params{Config: json.RawMessage(cfg + "}"), Schema: fixture.Schema("id BIGINT"), BatchSize: 10})
	require.NoError(t, err)
	err = src.Open(ctx, nil)
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.ErrorContains(t, err, "has a deletion vector (format v3")
	require.ErrorContains(t, err, "which Sluice does not support yet")
}

// TestDeleteCacheReleased writes a format-v2 table of two data files, a
// merge-on-read DELETE of the even ids in both (position deletes) and an
// equality delete of ids 5 and 15, and reads its snapshot in batches of 4. The
// delete cache holds no positions of a data file once it is opened, and
// nothing once the last data file is: a snapshot's deletes are not all
// kept until its end. The rows are the ids written minus those deleted.
func TestDeleteCacheReleased(t *testing.T) {
	ctx := context.Background()
	tbl, dbPath := sqliteTable(t, t.TempDir(), iceberggo.Properties{"format-version": "2", table.WriteDeleteModeKey: table.WriteModeMergeOnRead})
	tbl = appendIDs(t, tbl, "id", idRange(1, 10)...)
	tbl = appendIDs(t, tbl, "id", idRange(11, 20)...)
	tbl, err := tbl.Delete(ctx, iceberggo.IsIn(iceberggo.Reference("id"), []int64{2, 4, 6, 8, 10, 12, 14, 16, 18, 20}...), nil)
	require.NoError(t, err)
	key := fixture.Int64s("id", 5, 15)
	tx := tbl.NewTransaction()
	require.NoError(t, tx.CommitEqualityDeletes(ctx, []int{1}, func(yield func(arrow.RecordBatch, error) bool) { yield(key, nil) }, nil))
	tbl, err = tx.Commit(ctx)
	require.NoError(t, err)
	key.Release()
	pos, eq := deleteFileCounts(t, tbl)
	require.Positive(t, pos)
	require.Equal(t, 2, eq, "the equality delete applies to both data files")

	cfg := fmt.Sprintf(`{"mode": "snapshot", "catalog_type": "sql", "sql.uri": %q, "sql.driver": "sqlite", "table_name": "ns.t"}`, dbPath)
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	src, err := iceberg.New(connectors.Params{Config: json.RawMessage(cfg), Schema: fixture.Schema("id BIGINT"), BatchSize: 4, Allocator: alloc})
	require.NoError(t, err)
	require.NoError(t, src.Open(ctx, nil))
	defer src.Close()
	var rows []string
	seen := map[int]bool{}
	for {
		b, err := src.Read(ctx)
		if errors.Is(err, connectors.ErrEndOfInput) {
			break
		}
		require.NoError(t, err)
		var cp iceberg.Checkpoint
		require.NoError(t, json.Unmarshal(b.Checkpoint, &cp))
		if !seen[cp.File] && !cp.Done {
			seen[cp.File] = true
			positions, keySets := iceberg.CachedDeletes(src)
			t.Logf("file %d: %d position lists, %d key sets", cp.File, positions, keySets)
			if cp.File == 0 {
				require.LessOrEqual(t, positions, 1, "at most the second file's positions")
				require.Equal(t, 1, keySets, "the equality delete, which the second file needs")
			} else {
				require.Zero(t, positions, "nothing left to read needs a position")
				require.Zero(t, keySets, "nothing left to read needs a key")
			}
		}
		if b.Record != nil {
			for i := range int(b.Record.NumRows()) {
				rows = append(rows, fixture.Row(b.Record, i, 1)+"|+1")
			}
			b.Record.Release()
		}
	}
	require.Equal(t, map[int]bool{0: true, 1: true}, seen)
	var want []int64
	for _, id := range idRange(1, 20) {
		if id%2 == 1 && id != 5 && id != 15 {
			want = append(want, id)
		}
	}
	sort.Strings(rows)
	require.Equal(t, plusRows(want), rows)
}
