package iceberg_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
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

// TestSchemaEvolution appends to a table of (id long, n int, x float),
// then with iceberg-go's schema update adds a string column, promotes n
// to long and x to double, renames x to ratio (Iceberg spec, "Schema
// Evolution"), and appends again. Rows of the older file read NULL in
// the new column and their values at the promoted types, matched by
// field id; a data file read as the older types shows what promotion
// changes (a float's double value is its float32 value).
func TestSchemaEvolution(t *testing.T) {
	ctx := context.Background()
	sc := iceberggo.NewSchema(0,
		iceberggo.NestedField{ID: 1, Name: "id", Type: iceberggo.PrimitiveTypes.Int64},
		iceberggo.NestedField{ID: 2, Name: "n", Type: iceberggo.PrimitiveTypes.Int32},
		iceberggo.NestedField{ID: 3, Name: "x", Type: iceberggo.PrimitiveTypes.Float32})
	tbl, dbPath := sqliteTableOf(t, t.TempDir(), sc, iceberggo.Properties{"format-version": "2"})

	old := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "n", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "x", Type: arrow.PrimitiveTypes.Float32, Nullable: true}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, old)
	b.Field(0).(*array.Int64Builder).AppendValues([]int64{1, 2}, nil)
	b.Field(1).(*array.Int32Builder).AppendValues([]int32{-7, 2147483647}, nil)
	b.Field(2).(*array.Float32Builder).AppendValues([]float32{1.5, 0.1}, nil)
	rec := b.NewRecordBatch()
	b.Release()
	rdr, err := array.NewRecordReader(old, []arrow.RecordBatch{rec})
	require.NoError(t, err)
	tbl, err = tbl.Append(ctx, rdr, nil)
	require.NoError(t, err)
	rdr.Release()
	rec.Release()
	before := tbl.CurrentSnapshot().SnapshotID

	tx := tbl.NewTransaction()
	require.NoError(t, tx.UpdateSchema(true, false).
		AddColumn([]string{"label"}, iceberggo.PrimitiveTypes.String, "", false, nil).
		UpdateColumn([]string{"n"}, table.ColumnUpdate{FieldType: iceberggo.Optional[iceberggo.Type]{Val: iceberggo.PrimitiveTypes.Int64, Valid: true}}).
		UpdateColumn([]string{"x"}, table.ColumnUpdate{FieldType: iceberggo.Optional[iceberggo.Type]{Val: iceberggo.PrimitiveTypes.Float64, Valid: true}}).
		RenameColumn([]string{"x"}, "ratio").Commit())
	tbl, err = tx.Commit(ctx)
	require.NoError(t, err)
	cur := tbl.Schema()
	for name, want := range map[string]iceberggo.Type{"n": iceberggo.PrimitiveTypes.Int64, "ratio": iceberggo.PrimitiveTypes.Float64, "label": iceberggo.PrimitiveTypes.String} {
		f, ok := cur.FindFieldByName(name)
		require.True(t, ok, name)
		require.Equal(t, want, f.Type, name)
	}

	evolved := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "n", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "ratio", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "label", Type: arrow.BinaryTypes.String, Nullable: true}}, nil)
	b = array.NewRecordBuilder(memory.DefaultAllocator, evolved)
	b.Field(0).(*array.Int64Builder).AppendValues([]int64{3}, nil)
	b.Field(1).(*array.Int64Builder).AppendValues([]int64{1 << 40}, nil)
	b.Field(2).(*array.Float64Builder).AppendValues([]float64{0.1}, nil)
	b.Field(3).(*array.StringBuilder).AppendValues([]string{"new"}, nil)
	rec = b.NewRecordBatch()
	b.Release()
	rdr, err = array.NewRecordReader(evolved, []arrow.RecordBatch{rec})
	require.NoError(t, err)
	_, err = tbl.Append(ctx, rdr, nil)
	require.NoError(t, err)
	rdr.Release()
	rec.Release()

	// The expected text of each value, from the values written: NULL for
	// the added column in the older file, float32 values widened.
	f64 := func(f float32) string { return fmt.Sprint(float64(f)) }
	want := []string{
		fmt.Sprintf("1|-7|%s|NULL|+1", f64(1.5)),
		fmt.Sprintf("2|%d|%s|NULL|+1", int64(2147483647), f64(0.1)),
		fmt.Sprintf("3|%d|%v|new|+1", int64(1<<40), 0.1),
	}
	sort.Strings(want)
	cfg := fmt.Sprintf(`{"mode": "snapshot", "catalog_type": "sql", "sql.uri": %q, "sql.driver": "sqlite", "table_name": "ns.t"`, dbPath)
	tableSchema := fixture.Schema("id BIGINT", "n BIGINT", "ratio DOUBLE", "label VARCHAR")
	d := read(t, cfg+"}", tableSchema, nil, 0, true)
	sort.Strings(d.Rows)
	require.Equal(t, want, d.Rows)
	require.NotEqual(t, "0.1", fmt.Sprint(float64(float32(0.1))), "the promoted float is not the double 0.1")

	// Only the added column: the older file has none of the columns read,
	// and its rows still come, as NULLs.
	d = read(t, cfg+"}", fixture.Schema("label VARCHAR"), nil, 0, true)
	sort.Strings(d.Rows)
	require.Equal(t, []string{"NULL|+1", "NULL|+1", "new|+1"}, d.Rows)
	steps := fixture.ReadInSteps(t, iceberg.New, connectors.Params{Config: json.RawMessage(cfg + "}"), Schema: fixture.Schema("label VARCHAR"), BatchSize: 1}, 1, true)
	sort.Strings(steps.Rows)
	require.Equal(t, d.Rows, steps.Rows)

	// The snapshot before the change, read with the current columns.
	d = read(t, cfg+fmt.Sprintf(`, "snapshot_id": %d}`, before), tableSchema, nil, 0, true)
	sort.Strings(d.Rows)
	require.Equal(t, want[:2], d.Rows)
}

// TestDroppedColumn appends (id, name) rows, drops column name from the
// table's schema and appends again. A table column "name", absent from
// the current Iceberg schema, has no field id: every row reads NULL in
// it, including those of the older file, whose Parquet column "name"
// carries the dropped field's id (Iceberg spec, "Column Projection":
// columns are resolved by id, never by name in files with ids).
func TestDroppedColumn(t *testing.T) {
	ctx := context.Background()
	tbl, dbPath := sqliteTableOf(t, t.TempDir(), idNameSchema, iceberggo.Properties{"format-version": "2"})
	rec := idNames([]int64{1, 2}, []string{"a", "b"})
	rdr, err := array.NewRecordReader(rec.Schema(), []arrow.RecordBatch{rec})
	require.NoError(t, err)
	tbl, err = tbl.Append(ctx, rdr, nil)
	require.NoError(t, err)
	rdr.Release()
	rec.Release()
	tx := tbl.NewTransaction()
	require.NoError(t, tx.UpdateSchema(true, false).DeleteColumn([]string{"name"}).Commit())
	tbl, err = tx.Commit(ctx)
	require.NoError(t, err)
	_, ok := tbl.Schema().FindFieldByName("name")
	require.False(t, ok, "name is dropped")
	appendIDs(t, tbl, "id", 3)

	cfg := fmt.Sprintf(`{"mode": "snapshot", "catalog_type": "sql", "sql.uri": %q, "sql.driver": "sqlite", "table_name": "ns.t"}`, dbPath)
	d := read(t, cfg, fixture.Schema("id BIGINT", "name VARCHAR"), nil, 0, true)
	sort.Strings(d.Rows)
	require.Equal(t, []string{"1|NULL|+1", "2|NULL|+1", "3|NULL|+1"}, d.Rows, "no values of the dropped column")
}
