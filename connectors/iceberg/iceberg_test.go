package iceberg_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	iceberggo "github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	sqlcat "github.com/apache/iceberg-go/catalog/sql"
	"github.com/apache/iceberg-go/table"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/iceberg"
	"github.com/sluicehq/sluice/internal/fixture"
)

var lineitem = fixture.Schema("l_orderkey BIGINT", "l_partkey BIGINT", "l_suppkey BIGINT", "l_linenumber BIGINT",
	"l_quantity DECIMAL(15,2)", "l_extendedprice DECIMAL(15,2)", "l_discount DECIMAL(15,2)", "l_tax DECIMAL(15,2)",
	"l_returnflag VARCHAR", "l_linestatus VARCHAR", "l_shipdate DATE", "l_commitdate DATE", "l_receiptdate DATE",
	"l_shipinstruct VARCHAR", "l_shipmode VARCHAR", "l_comment VARCHAR")

func read(t *testing.T, cfg string, sc *arrow.Schema, cp connectors.Checkpoint, max int64, keep bool) fixture.Drained {
	t.Helper()
	p := connectors.Params{Endpoint: "t.iceberg", Config: json.RawMessage(cfg), Schema: sc, BatchSize: 4096}
	return fixture.ReadSource(t, iceberg.New, p, cp, max, keep)
}

// column sums column i (an integer) over the rows.
func column(t *testing.T, rows []string, i int) (sum int64) {
	for _, r := range rows {
		var n int64
		_, err := fmt.Sscan(strings.Split(r, "|")[i], &n)
		require.NoError(t, err, r)
		sum += n
	}
	return sum
}

// TestLineitemSnapshots reads both snapshots of the TPC-H lineitem table
// written by Spark: the append and the copy-on-write DELETE of every row
// with l_extendedprice < 10000. Counts and sum(l_orderkey) are the ones in
// LAKEHOUSE.md; the filter shows the deleted rows are gone.
func TestLineitemSnapshots(t *testing.T) {
	dir := fixture.Shared(t, "iceberg/lineitem_iceberg")
	for _, tc := range []struct {
		name     string
		snapshot string
		rows     int
		sum      int64
		cheap    int // rows with l_extendedprice < 10000
	}{
		{"current (overwrite)", "", 51793, 1553321902, 0},
		{"append", `, "snapshot_id": 7817332053627255703`, 60175, 1802759573, 8382},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fmt.Sprintf(`{"mode": "snapshot", "metadata_location": %q, "allow_moved_paths": true%s}`, dir, tc.snapshot)
			d := read(t, cfg, lineitem, nil, 0, true)
			require.True(t, d.EndOfInput)
			require.Len(t, d.Rows, tc.rows)
			require.Equal(t, tc.sum, column(t, d.Rows, 0))
			cheap := read(t, strings.TrimSuffix(cfg, "}")+`, "snapshot_filter": "l_extendedprice < 10000"}`, lineitem, nil, 0, false)
			require.Equal(t, int64(tc.cheap), cheap.Hash.Count)
		})
	}
}

// TestNullsAndSnapshots reads the three appends of is_null_is_not_null
// (Iceberg Java 1.8.1), by snapshot id and by time, value by value.
func TestNullsAndSnapshots(t *testing.T) {
	dir := fixture.Shared(t, "iceberg/is_null_is_not_null")
	sc := fixture.Schema("id BIGINT", "value VARCHAR")
	all := []string{"1|NULL|+1", "2|NULL|+1", "3|NULL|+1", "4|foo|+1", "5|bar|+1", "6|baz|+1", "7|NULL|+1", "8|blah|+1"}
	for _, tc := range []struct {
		name, option string
		want         []string
	}{
		{"first", `"snapshot_id": 6009550004485738065`, all[:3]},
		{"second", `"snapshot_id": 2353095958979530531`, all[:6]},
		{"current", `"snapshot_id": 1222714758486840798`, all},
		{"as of the second commit", `"datetime": "2025-07-09T15:16:51.050Z"`, all[:6]},
		{"filtered", `"snapshot_filter": "value IS NULL OR id IN (5, 6)"`, []string{"1|NULL|+1", "2|NULL|+1", "3|NULL|+1", "5|bar|+1", "6|baz|+1", "7|NULL|+1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := read(t, fmt.Sprintf(`{"mode": "snapshot", "metadata_location": %q, "allow_moved_paths": true, %s}`, dir, tc.option), sc, nil, 0, true)
			sort.Strings(d.Rows)
			require.Equal(t, tc.want, d.Rows)
		})
	}
}

func TestBucketPartitioned(t *testing.T) {
	dir := fixture.Shared(t, "iceberg/partition_bucket_test")
	d := read(t, fmt.Sprintf(`{"mode": "snapshot", "metadata_location": %q, "allow_moved_paths": true}`, dir), fixture.Schema("id BIGINT", "name VARCHAR", "partition_col VARCHAR"), nil, 0, true)
	require.Len(t, d.Rows, 100)
	require.Equal(t, int64(4950), column(t, d.Rows, 0))
}

// TestResume stops after every 5,000 rows and resumes from the checkpoint.
func TestResume(t *testing.T) {
	cfg := fmt.Sprintf(`{"mode": "snapshot", "metadata_location": %q, "allow_moved_paths": true}`, fixture.Shared(t, "iceberg/lineitem_iceberg"))
	whole := read(t, cfg, lineitem, nil, 0, false)
	got := fixture.ReadInSteps(t, iceberg.New, connectors.Params{Config: json.RawMessage(cfg), Schema: lineitem, BatchSize: 4096}, 5000, false)
	require.Equal(t, whole.Hash, got.Hash)
}

// TestSQLCatalog registers lineitem in an Iceberg SQL catalog kept in the
// real PostgreSQL on this machine and reads it through catalog_type sql.
func TestSQLCatalog(t *testing.T) {
	uri := "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	db, err := sql.Open("pgx", uri)
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Ping(), "PostgreSQL must run on 127.0.0.1:5432 (database test, trust auth)")
	name := fmt.Sprintf("sluice_test_%d", rand.Uint32())
	cat, err := sqlcat.NewCatalog(name, db, sqlcat.Postgres, iceberggo.Properties{}) // creates the catalog's tables
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, cat.CreateNamespace(ctx, []string{"tpch"}, nil))
	// Register the existing table as pyiceberg's register_table does: a
	// row pointing at its metadata file.
	meta := filepath.Join(fixture.Shared(t, "iceberg/lineitem_iceberg"), "metadata", "v2.metadata.json")
	_, err = db.ExecContext(ctx, `INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, iceberg_type, metadata_location) VALUES ($1, 'tpch', 'lineitem', 'TABLE', $2)`, name, meta)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = db.ExecContext(ctx, `DELETE FROM iceberg_tables WHERE catalog_name = $1`, name)
		_, _ = db.ExecContext(ctx, `DELETE FROM iceberg_namespace_properties WHERE catalog_name = $1`, name)
	})

	cfg := fmt.Sprintf(`{"mode": "snapshot", "catalog_type": "sql", "sql.uri": %q, "sql.driver": "pgx", "catalog_name": %q, "table_name": "tpch.lineitem", "allow_moved_paths": true}`, uri, name)
	d := read(t, cfg, lineitem, nil, 0, false)
	require.Equal(t, int64(51793), d.Hash.Count)

	src, err := iceberg.New(connectors.Params{Config: json.RawMessage(strings.Replace(cfg, "tpch.lineitem", "tpch.orders", 1)), Schema: lineitem, BatchSize: 10})
	require.NoError(t, err)
	_, err = src.(connectors.Resolver).Resolve(ctx)
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.ErrorContains(t, err, "iceberg table tpch.orders")
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, cfg, want string }{
		{"nothing", `{}`, "transport.config.mode: required: snapshot, follow or snapshot_and_follow\ntransport.config.metadata_location: set metadata_location, or catalog_type and table_name"},
		{"mode", `{"mode": "stream", "metadata_location": "/t"}`, "transport.config.mode: want snapshot, follow or snapshot_and_follow, got \"stream\""},
		{"end in snapshot mode", `{"mode": "snapshot", "metadata_location": "/t", "end_snapshot_id": 1}`, "transport.config.end_snapshot_id: only for modes that follow (snapshot mode ends after the snapshot)"},
		{"filter in follow mode", `{"mode": "follow", "metadata_location": "/t", "snapshot_filter": "id > 1"}`, "transport.config.snapshot_filter: mode follow reads no snapshot"},
		{"rest without uri", `{"mode": "snapshot", "catalog_type": "rest", "table_name": "ns.t"}`, "transport.config.rest.uri: required for catalog_type rest"},
		{"sql driver", `{"mode": "snapshot", "catalog_type": "sql", "table_name": "t", "sql.uri": "x", "sql.driver": "odbc"}`, "transport.config.table_name: want namespace.table, got \"t\"\ntransport.config.sql.driver: want pgx, mysql or sqlite, got \"odbc\""},
		{"both selectors", `{"mode": "snapshot", "metadata_location": "/t", "snapshot_id": 1, "datetime": "2024-01-01"}`, "transport.config.datetime: set snapshot_id or datetime, not both"},
		{"filter", `{"mode": "snapshot", "metadata_location": "/t", "snapshot_filter": "id >"}`, "transport.config.snapshot_filter: expected a column or a value at the end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, fixture.ConfigError("iceberg_input", iceberg.New, tc.cfg, fixture.Schema("id BIGINT")))
		})
	}
}

// TestS3 reads lineitem from an S3 bucket (gofakes3 over HTTP), its
// relative paths relocated under s3://lake/warehouse/lineitem_iceberg.
func TestS3(t *testing.T) {
	srv := fixture.NewS3(t)
	srv.PutDir(t, "lake", "warehouse/lineitem_iceberg", fixture.Shared(t, "iceberg/lineitem_iceberg"))
	cfg := fmt.Sprintf(`{"mode": "snapshot", "metadata_location": "s3://lake/warehouse/lineitem_iceberg", "allow_moved_paths": true, %s}`, srv.Config())
	d := read(t, cfg, lineitem, nil, 0, false)
	require.Equal(t, int64(51793), d.Hash.Count)
	want := read(t, fmt.Sprintf(`{"mode": "snapshot", "metadata_location": %q, "allow_moved_paths": true}`, fixture.Shared(t, "iceberg/lineitem_iceberg")), lineitem, nil, 0, false)
	require.Equal(t, want.Hash, d.Hash, "the same rows as from the local copy")
}

// TestRenamedColumn renames a column between two appends (iceberg-go's
// schema evolution): the older file still calls it by its old name, and
// both files read into the column by its field id.
func TestRenamedColumn(t *testing.T) {
	ctx := context.Background()
	tbl, dbPath := sqliteTable(t, t.TempDir(), iceberggo.Properties{})
	tbl = appendIDs(t, tbl, "id", 1, 2)
	tx := tbl.NewTransaction()
	require.NoError(t, tx.UpdateSchema(true, false).RenameColumn([]string{"id"}, "flight_id").Commit())
	tbl, err := tx.Commit(ctx)
	require.NoError(t, err)
	appendIDs(t, tbl, "flight_id", 3)

	cfg := fmt.Sprintf(`{"mode": "snapshot", "catalog_type": "sql", "sql.uri": %q, "sql.driver": "sqlite", "table_name": "ns.t"}`, dbPath)
	d := read(t, cfg, fixture.Schema("flight_id BIGINT"), nil, 0, true)
	sort.Strings(d.Rows)
	require.Equal(t, []string{"1|+1", "2|+1", "3|+1"}, d.Rows, "no NULLs from the file written before the rename")
}

// sqliteTable creates table ns.t (one long column "id") with iceberg-go in
// a SQL catalog kept in SQLite under dir, with the table properties
// props. It returns the table and the catalog's database file.
func sqliteTable(t testing.TB, dir string, props iceberggo.Properties) (*table.Table, string) {
	return sqliteTableOf(t, dir, iceberggo.NewSchema(0, iceberggo.NestedField{ID: 1, Name: "id", Type: iceberggo.PrimitiveTypes.Int64}), props)
}

// sqliteTableOf is sqliteTable with the table schema sc.
func sqliteTableOf(t testing.TB, dir string, sc *iceberggo.Schema, props iceberggo.Properties) (*table.Table, string) {
	ctx := context.Background()
	dbPath := filepath.Join(dir, "catalog.db")
	db, err := sql.Open("sqlite", dbPath)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	cat, err := sqlcat.NewCatalog("default", db, sqlcat.SQLite, iceberggo.Properties{})
	require.NoError(t, err)
	require.NoError(t, cat.CreateNamespace(ctx, []string{"ns"}, nil))
	tbl, err := cat.CreateTable(ctx, []string{"ns", "t"}, sc, catalog.WithLocation("file://"+filepath.Join(dir, "t")), catalog.WithProperties(props))
	require.NoError(t, err)
	return tbl, dbPath
}

// appendIDs appends a one-column file of ids, the column named name.
func appendIDs(t testing.TB, tbl *table.Table, name string, ids ...int64) *table.Table {
	rec := fixture.Int64s(name, ids...)
	defer rec.Release()
	rdr, err := array.NewRecordReader(rec.Schema(), []arrow.RecordBatch{rec})
	require.NoError(t, err)
	tbl, err = tbl.Append(context.Background(), rdr, nil)
	require.NoError(t, err)
	return tbl
}
