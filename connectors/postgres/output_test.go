package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/pipeline"
)

const testURI = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// db connects to the machine's PostgreSQL and creates a schema of the
// test's own, dropped at the end; tables go in it, and so does the
// outputs' _sluice_offsets.
func db(t testing.TB) (*pgx.Conn, string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testURI)
	require.NoError(t, err, "PostgreSQL must run on 127.0.0.1:5432 (database test, trust auth)")
	schema := fmt.Sprintf("sluice_pg_%d", rand.Uint32())
	_, err = conn.Exec(ctx, "CREATE SCHEMA "+schema)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
		_ = conn.Close(ctx)
	})
	return conn, schema
}

func exec(t testing.TB, conn *pgx.Conn, sql string) {
	t.Helper()
	_, err := conn.Exec(context.Background(), sql)
	require.NoError(t, err, sql)
}

// The table of most tests: id BIGINT PRIMARY KEY, name VARCHAR,
// amount DECIMAL(10,2), at TIMESTAMP.
var (
	dec102 = &arrow.Decimal128Type{Precision: 10, Scale: 2}
	people = arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "amount", Type: dec102, Nullable: true},
		{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Microsecond}, Nullable: true},
	}, nil)
	base = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
)

const peopleDDL = "(id bigint PRIMARY KEY, name varchar(40), amount numeric(10,2), at timestamp)"

// change is one row of a change batch: id, name, cents and weight; at is
// base plus id seconds.
type change struct {
	id    int64
	name  string
	cents int64
	w     int64
}

func batch(t *testing.T, mem memory.Allocator, changes ...change) arrow.RecordBatch {
	t.Helper()
	b := array.NewRecordBuilder(mem, pipeline.WithWeight(people))
	defer b.Release()
	for _, c := range changes {
		b.Field(0).(*array.Int64Builder).Append(c.id)
		b.Field(1).(*array.StringBuilder).Append(c.name)
		b.Field(2).(*array.Decimal128Builder).Append(decimal128.FromI64(c.cents))
		b.Field(3).(*array.TimestampBuilder).Append(arrow.Timestamp(base.Add(time.Duration(c.id) * time.Second).UnixMicro()))
		b.Field(4).(*array.Int64Builder).Append(c.w)
	}
	return b.NewRecordBatch()
}

func newOutput(t *testing.T, schema *arrow.Schema, pk []string, cfg string, pipelineName string) *Output {
	t.Helper()
	s, err := NewOutput(connectors.SinkParams{Endpoint: "t.out", Pipeline: pipelineName, Table: "t", Connector: "out", Config: json.RawMessage(cfg), Schema: schema, PrimaryKey: pk})
	require.NoError(t, err)
	return s.(*Output)
}

func materialized(t *testing.T, schema string) *Output {
	return newOutput(t, people, []string{"id"}, fmt.Sprintf(`{"uri": %q, "table": "%s.people"}`, testURI, schema), "p")
}

// write writes one version's changes (and releases the batch).
func write(t *testing.T, o *Output, mem memory.Allocator, version int64, changes ...change) {
	t.Helper()
	rec := batch(t, mem, changes...)
	defer rec.Release()
	require.NoError(t, o.Write(context.Background(), connectors.ChangeBatch{Record: rec, Version: version, Time: base.Add(time.Duration(version) * time.Minute)}))
}

// rowsOf returns "id name amount at" lines, sorted by id.
func rowsOf(t *testing.T, conn *pgx.Conn, sql string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		require.NoError(t, err)
		var parts []string
		for _, v := range vals {
			switch v := v.(type) {
			case time.Time:
				parts = append(parts, v.UTC().Format(time.RFC3339))
			default:
				parts = append(parts, fmt.Sprint(v))
			}
		}
		out = append(out, strings.Join(parts, " "))
	}
	require.NoError(t, rows.Err())
	return out
}

func people2(t *testing.T, conn *pgx.Conn, schema string) []string {
	return rowsOf(t, conn, "SELECT id, name, amount::text, at FROM "+schema+".people ORDER BY id")
}

func position(t *testing.T, conn *pgx.Conn, schema string) int64 {
	var v int64
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT version FROM "+schema+"._sluice_offsets WHERE pipeline = 'p' AND table_name = 't' AND connector = 'out'").Scan(&v))
	return v
}

func line(id int64, name string, amount string) string {
	return fmt.Sprintf("%d %s %s %s", id, name, amount, base.Add(time.Duration(id)*time.Second).Format(time.RFC3339))
}

// TestMaterialized applies inserts, updates (-1 old, +1 new, in either
// order) and deletes over several commits, one of them covering two
// versions, and checks the table and the position after each.
func TestMaterialized(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	conn, schema := db(t)
	exec(t, conn, "CREATE TABLE "+schema+".people "+peopleDDL)
	ctx := context.Background()
	o := materialized(t, schema)
	defer o.Close()
	v, err := o.Open(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(-1), v)
	require.Equal(t, connectors.ExactlyOnce, o.Guarantee())

	write(t, o, mem, 0, change{1, "ann", 100, 1}, change{2, "bob", 200, 1})
	write(t, o, mem, 0, change{3, "cid", 300, 1})
	require.NoError(t, o.Commit(ctx, 0))
	require.Equal(t, []string{line(1, "ann", "1.00"), line(2, "bob", "2.00"), line(3, "cid", "3.00")}, people2(t, conn, schema))
	require.Equal(t, int64(0), position(t, conn, schema))

	// Version 1: update 2 (+new before -old), delete 3, insert 4.
	write(t, o, mem, 1, change{2, "bob", 250, 1}, change{3, "cid", 300, -1}, change{2, "bob", 200, -1}, change{4, "dan", 400, 1})
	require.NoError(t, o.Commit(ctx, 1))
	require.Equal(t, []string{line(1, "ann", "1.00"), line(2, "bob", "2.50"), line(4, "dan", "4.00")}, people2(t, conn, schema))

	// Versions 2 and 3 in one commit: 5 inserted then deleted, 1 updated
	// twice, 4 deleted and inserted back with the same row, 6 inserted.
	write(t, o, mem, 2, change{5, "eve", 500, 1}, change{1, "ann", 100, -1}, change{1, "amy", 110, 1}, change{4, "dan", 400, -1})
	write(t, o, mem, 3, change{5, "eve", 500, -1}, change{1, "amy", 110, -1}, change{1, "abe", 120, 1}, change{4, "dan", 400, 1}, change{6, "fay", 600, 1})
	require.NoError(t, o.Commit(ctx, 3))
	require.Equal(t, []string{line(1, "abe", "1.20"), line(2, "bob", "2.50"), line(4, "dan", "4.00"), line(6, "fay", "6.00")}, people2(t, conn, schema))
	require.Equal(t, int64(3), position(t, conn, schema))

	// An empty version still moves the position.
	require.NoError(t, o.Commit(ctx, 4))
	require.Equal(t, int64(4), position(t, conn, schema))
	require.Error(t, o.Commit(ctx, 4), "a version already delivered")
	bytes, _ := o.Transmitted()
	require.Positive(t, bytes)
}

// TestResumeAfterCrash reopens after a commit: Open returns the committed
// version, the caller skips it, and nothing is duplicated. A second sink
// opened at the same position (a stale attempt) is fenced off.
func TestResumeAfterCrash(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	conn, schema := db(t)
	exec(t, conn, "CREATE TABLE "+schema+".people "+peopleDDL)
	ctx := context.Background()
	versions := [][]change{
		{{1, "ann", 100, 1}, {2, "bob", 200, 1}},
		{{2, "bob", 200, -1}, {2, "bob", 210, 1}, {3, "cid", 300, 1}},
		{{1, "ann", 100, -1}, {4, "dan", 400, 1}},
	}
	deliver := func(o *Output, upTo int64) {
		delivered, err := o.Open(ctx)
		require.NoError(t, err)
		for v := delivered + 1; v <= upTo; v++ {
			write(t, o, mem, v, versions[v]...)
			require.NoError(t, o.Commit(ctx, v))
		}
	}
	o := materialized(t, schema)
	deliver(o, 1)
	require.NoError(t, o.Close()) // the worker dies after committing version 1

	o = materialized(t, schema)
	v, err := o.Open(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), v)
	require.NoError(t, o.Close())

	// The retried attempt and a stale one both open at version 1.
	stale := materialized(t, schema)
	defer stale.Close()
	_, err = stale.Open(ctx)
	require.NoError(t, err)
	o = materialized(t, schema)
	defer o.Close()
	deliver(o, 2)
	// The stale attempt's transaction finds the position moved on its
	// first write (or commit) and writes nothing.
	rec := batch(t, mem, versions[2]...)
	defer rec.Release()
	err = stale.Write(ctx, connectors.ChangeBatch{Record: rec, Version: 2})
	require.ErrorIs(t, err, ErrFenced)
	require.NotErrorIs(t, err, connectors.ErrFatal)
	require.ErrorIs(t, stale.Commit(ctx, 2), ErrFenced)

	require.Equal(t, []string{line(2, "bob", "2.10"), line(3, "cid", "3.00"), line(4, "dan", "4.00")}, people2(t, conn, schema))
	require.Equal(t, int64(2), position(t, conn, schema))
}

// TestFailedCommit: a transaction killed between Write and Commit, and a
// Close without Commit, leave neither rows nor position.
func TestFailedCommit(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	conn, schema := db(t)
	exec(t, conn, "CREATE TABLE "+schema+".people "+peopleDDL)
	ctx := context.Background()

	o := materialized(t, schema)
	_, err := o.Open(ctx)
	require.NoError(t, err)
	write(t, o, mem, 0, change{1, "ann", 100, 1})
	require.NoError(t, o.Commit(ctx, 0))

	write(t, o, mem, 1, change{2, "bob", 200, 1})
	// Kill the sink's backend in the middle of its transaction.
	_, err = conn.Exec(ctx, "SELECT pg_terminate_backend($1)", o.conn.PgConn().PID())
	require.NoError(t, err)
	require.Error(t, o.Commit(ctx, 1))
	require.Error(t, o.Commit(ctx, 1), "a sink whose transaction failed commits nothing until reopened")
	require.NoError(t, o.Close())
	require.Equal(t, []string{line(1, "ann", "1.00")}, people2(t, conn, schema))
	require.Equal(t, int64(0), position(t, conn, schema))

	o = materialized(t, schema)
	v, err := o.Open(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(0), v)
	write(t, o, mem, 1, change{2, "bob", 200, 1}, change{3, "cid", 300, 1})
	require.NoError(t, o.Close()) // no Commit
	require.Equal(t, []string{line(1, "ann", "1.00")}, people2(t, conn, schema))
	require.Equal(t, int64(0), position(t, conn, schema))
}

// TestCDC appends every change with its operation and the version's
// commit time, under Feldera's default column names and under others
// (a bigint of microseconds for the time).
func TestCDC(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	conn, schema := db(t)
	ctx := context.Background()
	exec(t, conn, "CREATE TABLE "+schema+".log (id bigint, name text, amount numeric, at timestamptz, __feldera_op text, __feldera_ts timestamptz, seq bigserial)")
	o := newOutput(t, people, nil, fmt.Sprintf(`{"uri": %q, "table": "%s.log", "mode": "cdc"}`, testURI, schema), "p")
	defer o.Close()
	v, err := o.Open(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(-1), v)
	write(t, o, mem, 0, change{1, "ann", 100, 1}, change{2, "bob", 200, 2})
	require.NoError(t, o.Commit(ctx, 0))
	write(t, o, mem, 1, change{1, "ann", 100, -1}, change{1, "amy", 100, 1}, change{3, "zero", 0, 0})
	require.NoError(t, o.Commit(ctx, 1))
	ts0, ts1 := base.Format(time.RFC3339), base.Add(time.Minute).Format(time.RFC3339)
	require.Equal(t, []string{
		"1 ann 1.00 i " + ts0,
		"2 bob 2.00 i " + ts0,
		"2 bob 2.00 i " + ts0,
		"1 ann 1.00 d " + ts1,
		"1 amy 1.00 i " + ts1,
	}, rowsOf(t, conn, "SELECT id, name, amount::text, __feldera_op, __feldera_ts FROM "+schema+".log ORDER BY seq"))
	require.Equal(t, int64(1), position(t, conn, schema))

	exec(t, conn, "CREATE TABLE "+schema+".log2 (id bigint, name text, amount numeric(12,2), at timestamp, op char(1), ts bigint)")
	o2 := newOutput(t, people, nil, fmt.Sprintf(`{"uri": %q, "table": "%s.log2", "mode": "cdc", "cdc_op_column": "op", "cdc_ts_column": "ts"}`, testURI, schema), "p2")
	defer o2.Close()
	_, err = o2.Open(ctx)
	require.NoError(t, err)
	write(t, o2, mem, 7, change{9, "ivy", -905, -1})
	require.NoError(t, o2.Commit(ctx, 7))
	require.Equal(t, []string{fmt.Sprintf("9 ivy -9.05 d %d", base.Add(7*time.Minute).UnixMicro())},
		rowsOf(t, conn, "SELECT id, name, amount::text, op, ts FROM "+schema+".log2"))
}

// TestOpenErrors: what Open refuses, Fatal or not, before writing
// anything. Bad credentials are tested with a role that does not exist
// (SQLSTATE 28000, refused whatever pg_hba.conf says: the server trusts
// local connections, so a wrong password would be accepted) and a
// database that does not exist (3D000).
func TestOpenErrors(t *testing.T) {
	conn, schema := db(t)
	exec(t, conn, "CREATE TABLE "+schema+".wrong (id bigint PRIMARY KEY, name integer, amount numeric, at timestamp)")
	exec(t, conn, "CREATE TABLE "+schema+".nokey (id bigint, name text, amount numeric, at timestamp)")
	exec(t, conn, "CREATE TABLE "+schema+".extra (id bigint PRIMARY KEY, name text, amount numeric, at timestamp, must text NOT NULL)")
	exec(t, conn, "CREATE TABLE "+schema+".nocdc (id bigint, name text, amount numeric, at timestamp, __feldera_op integer)")
	for _, tc := range []struct {
		name  string
		uri   string
		table string
		mode  string
		fatal bool
		want  []string
	}{
		{name: "missing table", uri: testURI, table: schema + ".nope", fatal: true, want: []string{`table "` + schema + `.nope" does not exist`}},
		{name: "wrong type", uri: testURI, table: schema + ".wrong", fatal: true, want: []string{`column "name": PostgreSQL type integer does not fit Sluice type utf8`}},
		{name: "no unique key", uri: testURI, table: schema + ".nokey", fatal: true, want: []string{"no primary key or unique index on exactly (id)"}},
		{name: "not null column left out", uri: testURI, table: schema + ".extra", fatal: true, want: []string{`column "must"`, "NOT NULL without a default"}},
		{name: "cdc columns", uri: testURI, table: schema + ".nocdc", mode: "cdc", fatal: true, want: []string{`cdc_op_column "__feldera_op": PostgreSQL type integer`, `cdc_ts_column "__feldera_ts" is missing`}},
		{name: "unknown role", uri: "postgres://sluice_no_such_role@127.0.0.1:5432/test?sslmode=disable", table: "x", fatal: true, want: []string{"sluice_no_such_role", "28000"}},
		{name: "unknown database", uri: "postgres://postgres@127.0.0.1:5432/sluice_no_such_db?sslmode=disable", table: "x", fatal: true, want: []string{"3D000"}},
		{name: "connection refused", uri: "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=5", table: "x", fatal: false, want: []string{"refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mode := tc.mode
			if mode == "" {
				mode = "materialized"
			}
			o := newOutput(t, people, []string{"id"}, fmt.Sprintf(`{"uri": %q, "table": %q, "mode": %q}`, tc.uri, tc.table, mode), "p")
			defer o.Close()
			_, err := o.Open(context.Background())
			require.Error(t, err)
			require.Equal(t, tc.fatal, errors.Is(err, connectors.ErrFatal), "%v", err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
	// Nothing was written: no _sluice_offsets in the schema.
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = '_sluice_offsets'", schema).Scan(&n))
	require.Zero(t, n)
}

// TestConfig checks validation, with Feldera's field names.
func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  string
		pk   []string
		want string
	}{
		{name: "ok materialized", cfg: `{"uri": "postgres://h/db", "table": "t"}`, pk: []string{"id"}},
		{name: "ok cdc", cfg: `{"uri": "postgres://h/db", "table": "t", "mode": "cdc", "cdc_op_column": "op", "cdc_ts_column": "ts", "verify_hostname": false}`},
		{name: "required", cfg: `{}`, pk: []string{"id"}, want: "transport.config.uri: required: postgres://user:password@host:port/database\ntransport.config.table: required"},
		{name: "materialized needs a key", cfg: `{"uri": "u", "table": "t"}`, want: "transport.config.mode: materialized needs the table's primary_key (or use mode cdc)"},
		{name: "bad mode", cfg: `{"uri": "u", "table": "t", "mode": "append"}`, want: `transport.config.mode: want materialized or cdc, got "append"`},
		{name: "cdc columns in materialized", cfg: `{"uri": "u", "table": "t", "cdc_op_column": "op"}`, pk: []string{"id"}, want: "transport.config.cdc_op_column: only with mode cdc"},
		{name: "unknown field", cfg: `{"uri": "u", "table": "t", "topic": "x"}`, pk: []string{"id"}, want: `unknown field "topic"`},
		{name: "client cert without key", cfg: `{"uri": "u", "table": "t", "mode": "cdc", "ssl_client_location": "/c.pem"}`, want: "transport.config.ssl_client_key: give the client certificate"},
		{name: "bad ca", cfg: `{"uri": "u", "table": "t", "mode": "cdc", "ssl_ca_pem": "nope"}`, want: "transport.config.ssl_ca_pem: no PEM certificate found"},
		{name: "primary key not a column", cfg: `{"uri": "u", "table": "t"}`, pk: []string{"nope"}, want: `transport.config.mode: primary key column "nope" is not a column of the table`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewOutput(connectors.SinkParams{Config: json.RawMessage(tc.cfg), Schema: people, PrimaryKey: tc.pk})
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestTypes writes every Sluice column type, nulls and numeric edge
// cases, and reads them back as PostgreSQL's text.
func TestTypes(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	conn, schema := db(t)
	ctx := context.Background()
	tbl := &pipeline.Table{Name: "all", Columns: []pipeline.Column{
		{Name: "k", Type: "INT"}, {Name: "b", Type: "BOOLEAN"}, {Name: "i8", Type: "TINYINT"}, {Name: "i16", Type: "SMALLINT"},
		{Name: "i64", Type: "BIGINT"}, {Name: "r", Type: "REAL"}, {Name: "d", Type: "DOUBLE"}, {Name: "n", Type: "DECIMAL(38,10)"},
		{Name: "s", Type: "VARCHAR"}, {Name: "dt", Type: "DATE"}, {Name: "tm", Type: "TIME"}, {Name: "ts", Type: "TIMESTAMP"}, {Name: "bin", Type: "BYTEA"},
	}}
	sch, err := tbl.Schema()
	require.NoError(t, err)
	exec(t, conn, "CREATE TABLE "+schema+".all_types (k bigint PRIMARY KEY, b boolean, i8 smallint, i16 integer, i64 numeric, r real, d float8, n numeric(38,10), s jsonb, dt date, tm time, ts timestamptz, bin bytea)")
	o := newOutput(t, sch, []string{"k"}, fmt.Sprintf(`{"uri": %q, "table": "%s.all_types"}`, testURI, schema), "p")
	defer o.Close()
	_, err = o.Open(ctx)
	require.NoError(t, err)

	b := array.NewRecordBuilder(mem, pipeline.WithWeight(sch))
	defer b.Release()
	nums := []string{"0", "1", "-1", "0.0000000001", "12345.6789", "-99999999.5", "1000000000000000000000000000.0000000001", "-0.5", "10000", "0.0001"}
	for k, num := range nums {
		b.Field(0).(*array.Int32Builder).Append(int32(k))
		b.Field(1).(*array.BooleanBuilder).Append(k%2 == 0)
		b.Field(2).(*array.Int8Builder).Append(int8(-k))
		b.Field(3).(*array.Int16Builder).Append(int16(k * 1000))
		b.Field(4).(*array.Int64Builder).Append(int64(k) * -1_000_000_000_000)
		b.Field(5).(*array.Float32Builder).Append(float32(k) + 0.5)
		b.Field(6).(*array.Float64Builder).Append(float64(k) / 4)
		v, err := decimal128.FromString(num, 38, 10)
		require.NoError(t, err)
		b.Field(7).(*array.Decimal128Builder).Append(v)
		b.Field(8).(*array.StringBuilder).Append(fmt.Sprintf(`{"k": %d}`, k))
		b.Field(9).(*array.Date32Builder).Append(arrow.Date32(-k * 4000))
		b.Field(10).(*array.Time64Builder).Append(arrow.Time64(int64(k) * 3_600_000_001))
		b.Field(11).(*array.TimestampBuilder).Append(arrow.Timestamp(int64(k) * -86_400_000_000 * 400))
		b.Field(12).(*array.BinaryBuilder).Append([]byte{byte(k), 0, 0xff})
		b.Field(13).(*array.Int64Builder).Append(1)
	}
	b.Field(0).(*array.Int32Builder).Append(99)
	for i := 1; i < len(sch.Fields()); i++ {
		b.Field(i).AppendNull()
	}
	b.Field(13).(*array.Int64Builder).Append(1)
	rec := b.NewRecordBatch()
	defer rec.Release()
	require.NoError(t, o.Write(ctx, connectors.ChangeBatch{Record: rec, Version: 0, Time: base}))
	require.NoError(t, o.Commit(ctx, 0))

	exec(t, conn, "SET TIME ZONE 'UTC'")
	got := rowsOf(t, conn, "SELECT k, b::text, i8::text, i16::text, i64::text, r::text, d::text, n::text, s::text, dt::text, tm::text, ts::text, encode(bin, 'hex') FROM "+schema+".all_types ORDER BY k")
	want := make([]string, 0, len(nums)+1)
	for k, num := range nums {
		n, err := decimal128.FromString(num, 38, 10)
		require.NoError(t, err)
		ts := time.UnixMicro(int64(k) * -86_400_000_000 * 400).UTC()
		want = append(want, strings.Join([]string{
			fmt.Sprint(k), fmt.Sprint(k%2 == 0), fmt.Sprint(-k), fmt.Sprint(k * 1000), fmt.Sprint(int64(k) * -1_000_000_000_000),
			fmt.Sprint(float32(k) + 0.5), fmt.Sprint(float64(k) / 4), n.ToString(10), fmt.Sprintf(`{"k": %d}`, k),
			time.Unix(0, 0).UTC().AddDate(0, 0, -k*4000).Format("2006-01-02"),
			time.Unix(0, 0).UTC().Add(time.Duration(k) * 3_600_000_001 * time.Microsecond).Format("15:04:05.999999"),
			ts.Format("2006-01-02 15:04:05") + "+00", fmt.Sprintf("%02x00ff", k),
		}, " "))
	}
	want = append(want, "99"+strings.Repeat(" <nil>", 12))
	sort.Strings(want)
	sort.Strings(got)
	require.Equal(t, want, got)
}
