package postgres

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/pipeline"
)

// allTable is a table with every column type Sluice has, and the
// PostgreSQL table the tests read it from: a second timestamp column is
// timestamptz, and the VARCHAR j is jsonb.
var allTable = &pipeline.Table{Name: "all", Columns: []pipeline.Column{
	{Name: "id", Type: "BIGINT"}, {Name: "b", Type: "BOOLEAN"}, {Name: "i8", Type: "TINYINT"}, {Name: "i16", Type: "SMALLINT"},
	{Name: "i32", Type: "INT"}, {Name: "r", Type: "REAL"}, {Name: "d", Type: "DOUBLE"}, {Name: "n", Type: "DECIMAL(12,3)"},
	{Name: "s", Type: "VARCHAR"}, {Name: "j", Type: "VARCHAR"}, {Name: "dt", Type: "DATE"}, {Name: "tm", Type: "TIME"},
	{Name: "ts", Type: "TIMESTAMP"}, {Name: "tz", Type: "TIMESTAMP"}, {Name: "bin", Type: "VARBINARY"},
}}

const allDDL = "(id bigint PRIMARY KEY, b boolean, i8 smallint, i16 smallint, i32 integer, r real, d double precision, n numeric(12,3), " +
	"s text, j jsonb, dt date, tm time, ts timestamp, tz timestamptz, bin bytea)"

// allRow returns row i of the all-types table: the values to insert and
// the values the source must read, as valuesOf returns them. Every 11th
// row is NULL but for its id.
func allRow(i int64) (insert []any, want []any) {
	if i%11 == 0 {
		insert = make([]any, len(allTable.Columns))
		want = make([]any, len(allTable.Columns))
		insert[0], want[0] = i, i
		return insert, want
	}
	cents := i*1001 - 1_500_000
	days := i - 1500
	micros := (i * 12_345_678) % 86_400_000_000
	ts := i*3_600_000_123 - 1_000_000_000_000_000
	s := fmt.Sprintf("name %d ü '\" \\", i)
	bin := []byte{byte(i), byte(i >> 8), 0}
	insert = []any{
		i, i%2 == 0, int16(int8(i)), int16(i * 7), int32(i * 100_003), float32(i) / 3, float64(i) / 7 * 1e10,
		pgtype.Numeric{Int: big.NewInt(cents), Exp: -3, Valid: true}, s, fmt.Sprintf(`{"i": %d}`, i),
		pgtype.Date{Time: time.Unix(days*86400, 0).UTC(), Valid: true}, pgtype.Time{Microseconds: micros, Valid: true},
		pgtype.Timestamp{Time: time.UnixMicro(ts).UTC(), Valid: true}, time.UnixMicro(ts + 1), bin,
	}
	want = []any{
		i, i%2 == 0, int64(int8(i)), int64(int16(i * 7)), int64(int32(i * 100_003)), float64(float32(i) / 3), float64(i) / 7 * 1e10,
		big.NewFloat(float64(cents)).Text('f', 0) + "e-3", s, fmt.Sprintf(`{"i": %d}`, i),
		int64(days), micros, ts, ts + 1, hex.EncodeToString(bin),
	}
	return insert, want
}

// valuesOf returns the rows of rec's table columns as comparable values:
// integers, dates, times and timestamps as int64, floats as float64,
// decimals as "digitse-scale", binary as hex, NULL as nil.
func valuesOf(t *testing.T, rec arrow.RecordBatch) [][]any {
	t.Helper()
	n := int(rec.NumCols()) - 1
	require.Equal(t, pipeline.WeightColumn, rec.Schema().Field(n).Name)
	out := make([][]any, rec.NumRows())
	for r := range out {
		require.Equal(t, int64(1), rec.Column(n).(*array.Int64).Value(r))
		row := make([]any, n)
		for c := 0; c < n; c++ {
			col := rec.Column(c)
			if col.IsNull(r) {
				continue
			}
			switch a := col.(type) {
			case *array.Boolean:
				row[c] = a.Value(r)
			case *array.Int8:
				row[c] = int64(a.Value(r))
			case *array.Int16:
				row[c] = int64(a.Value(r))
			case *array.Int32:
				row[c] = int64(a.Value(r))
			case *array.Int64:
				row[c] = a.Value(r)
			case *array.Float32:
				row[c] = float64(a.Value(r))
			case *array.Float64:
				row[c] = a.Value(r)
			case *array.Decimal128:
				row[c] = a.Value(r).BigInt().String() + fmt.Sprintf("e-%d", a.DataType().(*arrow.Decimal128Type).Scale)
			case *array.String:
				row[c] = a.Value(r)
			case *array.Binary:
				row[c] = hex.EncodeToString(a.Value(r))
			case *array.Date32:
				row[c] = int64(a.Value(r))
			case *array.Time64:
				row[c] = int64(a.Value(r))
			case *array.Timestamp:
				row[c] = int64(a.Value(r))
			default:
				t.Fatalf("column %d: unexpected %T", c, col)
			}
		}
		out[r] = row
	}
	return out
}

func schemaOf(t testing.TB, tbl *pipeline.Table) *arrow.Schema {
	t.Helper()
	s, err := tbl.Schema()
	require.NoError(t, err)
	return s
}

func newInput(t *testing.T, schema *arrow.Schema, mem memory.Allocator, batch int, cfg string) *Input {
	t.Helper()
	s, err := NewInput(connectors.Params{Endpoint: "t.in", Config: json.RawMessage(cfg), Schema: schema, BatchSize: batch, Allocator: mem})
	require.NoError(t, err)
	return s.(*Input)
}

func inputConfig(query string, keys ...string) string {
	k, _ := json.Marshal(keys)
	return fmt.Sprintf(`{"uri": %q, "query": %q, "key_columns": %s}`, testURI, query, k)
}

// readN reads at most max batches (all if max < 0), checking each against
// the batch size, and returns their rows and the last checkpoint; eof
// says whether it reached end of input.
func readN(t *testing.T, s *Input, batch, max int) (rows [][]any, cp connectors.Checkpoint, eof bool) {
	t.Helper()
	ctx := context.Background()
	for i := 0; max < 0 || i < max; i++ {
		b, err := s.Read(ctx)
		if errors.Is(err, connectors.ErrEndOfInput) {
			// and it stays there
			_, err = s.Read(ctx)
			require.ErrorIs(t, err, connectors.ErrEndOfInput)
			return rows, cp, true
		}
		require.NoError(t, err)
		require.NotNil(t, b.Record)
		require.LessOrEqual(t, b.Rows(), int64(batch))
		require.Positive(t, b.Rows())
		require.Positive(t, b.Bytes)
		require.NotEmpty(t, b.Checkpoint)
		rows = append(rows, valuesOf(t, b.Record)...)
		b.Record.Release()
		cp = b.Checkpoint
	}
	return rows, cp, false
}

func insertAll(t *testing.T, conn *pgx.Conn, table string, n int64) [][]any {
	t.Helper()
	var ins, want [][]any
	for i := int64(1); i <= n; i++ {
		a, b := allRow(i)
		ins, want = append(ins, a), append(want, b)
	}
	names := make([]string, len(allTable.Columns))
	for i, c := range allTable.Columns {
		names[i] = c.Name
	}
	parts := strings.Split(table, ".")
	_, err := conn.CopyFrom(context.Background(), pgx.Identifier(parts), names, pgx.CopyFromRows(ins))
	require.NoError(t, err)
	return want
}

// TestInputRead reads a table of every type, with and without
// key_columns.
func TestInputRead(t *testing.T) {
	conn, schema := db(t)
	exec(t, conn, "CREATE TABLE "+schema+".all_types "+allDDL)
	const n = 3000
	want := insertAll(t, conn, schema+".all_types", n)
	sch := schemaOf(t, allTable)
	for _, tc := range []struct {
		name  string
		batch int
		keys  []string
	}{
		{name: "snapshot", batch: 512},
		{name: "key_columns", batch: 700, keys: []string{"id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
			defer mem.AssertSize(t, 0)
			s := newInput(t, sch, mem, tc.batch, inputConfig("SELECT * FROM "+schema+".all_types;", tc.keys...))
			defer s.Close()
			require.True(t, s.Bounded())
			require.NoError(t, s.Open(context.Background(), nil))
			got, cp, eof := readN(t, s, tc.batch, -1)
			require.True(t, eof)
			var c InputCheckpoint
			require.NoError(t, json.Unmarshal(cp, &c))
			require.Equal(t, int64(n), c.Rows)
			if len(tc.keys) > 0 {
				require.Equal(t, tc.keys, c.KeyColumns)
				require.Equal(t, []string{fmt.Sprint(n)}, c.Key)
				require.True(t, sort.SliceIsSorted(got, func(i, j int) bool { return got[i][0].(int64) < got[j][0].(int64) }), "key order")
			} else {
				require.Empty(t, c.Key)
			}
			sort.Slice(got, func(i, j int) bool { return got[i][0].(int64) < got[j][0].(int64) })
			require.Equal(t, want, got)
		})
	}
}

// TestInputResume reads some batches, closes, and resumes from the last
// batch's checkpoint: with key_columns (a compound key of a float, a
// timestamp and a text) every row is read exactly once, even with rows
// deleted and added meanwhile; without, by counting rows.
func TestInputResume(t *testing.T) {
	conn, schema := db(t)
	exec(t, conn, "CREATE TABLE "+schema+".events (g integer, f double precision, at timestamptz, name text, id bigint NOT NULL)")
	exec(t, conn, "INSERT INTO "+schema+".events SELECT i % 7, (i % 13) / 10.0 + 1e-17 * i, timestamptz '2024-01-01 00:00:00.000001+00' + (i % 3) * interval '1 microsecond', "+
		"'n''' || (i / 91), i FROM generate_series(1, 2000) AS i")
	tbl := &pipeline.Table{Name: "events", Columns: []pipeline.Column{
		{Name: "id", Type: "BIGINT"}, {Name: "g", Type: "INT"}, {Name: "f", Type: "DOUBLE"}, {Name: "at", Type: "TIMESTAMP"}, {Name: "name", Type: "VARCHAR"},
	}}
	sch := schemaOf(t, tbl)
	for _, tc := range []struct {
		name  string
		query string
		keys  []string
	}{
		{name: "compound key", query: "SELECT * FROM " + schema + ".events", keys: []string{"f", "at", "name", "g"}},
		{name: "single key", query: "SELECT id, g, f, at, name, 'extra' AS ignored FROM " + schema + ".events", keys: []string{"id"}},
		{name: "rows", query: "SELECT * FROM " + schema + ".events ORDER BY id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
			defer mem.AssertSize(t, 0)
			const batch = 150
			cfg := inputConfig(tc.query, tc.keys...)
			s := newInput(t, sch, mem, batch, cfg)
			want := connectors.ExactlyOnce
			if len(tc.keys) == 0 {
				want = connectors.AtLeastOnce
			}
			require.Equal(t, want, s.Guarantee())
			require.NoError(t, s.Open(context.Background(), nil))
			first, cp, eof := readN(t, s, batch, 4)
			require.False(t, eof)
			require.Len(t, first, 4*batch)
			// A batch read after the checkpoint is lost in the crash.
			b, err := s.Read(context.Background())
			require.NoError(t, err)
			b.Record.Release()
			require.NoError(t, s.Close())

			s = newInput(t, sch, mem, batch, cfg)
			defer s.Close()
			require.NoError(t, s.Open(context.Background(), cp))
			rest, _, eof := readN(t, s, batch, -1)
			require.True(t, eof)
			seen := map[int64]int{}
			for _, r := range append(first, rest...) {
				seen[r[0].(int64)]++
			}
			require.Len(t, seen, 2000)
			for id, k := range seen {
				require.Equal(t, 1, k, "id %d", id)
			}
			require.Len(t, append(first, rest...), 2000)
		})
	}

	t.Run("checkpoint of other key_columns", func(t *testing.T) {
		s := newInput(t, sch, memory.DefaultAllocator, 10, inputConfig("SELECT * FROM "+schema+".events", "id"))
		defer s.Close()
		err := s.Open(context.Background(), connectors.Checkpoint(`{"rows": 5, "key_columns": ["g"], "key": ["3"]}`))
		require.ErrorIs(t, err, connectors.ErrFatal)
		require.ErrorContains(t, err, "key_columns [g], but the config has key_columns [id]")
		err = s.Open(context.Background(), connectors.Checkpoint(`{"rows": 5}`))
		require.ErrorIs(t, err, connectors.ErrFatal)
	})
}

// TestInputOpenErrors checks what Open reports, fatal or retryable, and
// that no password shows.
func TestInputOpenErrors(t *testing.T) {
	conn, schema := db(t)
	exec(t, conn, "CREATE TABLE "+schema+".people "+peopleDDL)
	exec(t, conn, "CREATE TABLE "+schema+".texts (id text, name text, amount numeric, at timestamp)")
	sel := "SELECT * FROM " + schema + ".people"
	for _, tc := range []struct {
		name  string
		uri   string
		query string
		fatal bool
		want  []string
	}{
		{name: "type mismatch", query: "SELECT * FROM " + schema + ".texts", fatal: true, want: []string{`column "id": PostgreSQL type text does not fit the table's type BIGINT (want smallint, integer or bigint)`}},
		{name: "several mismatches", query: "SELECT id::int8, 1 AS name, amount::float8 AS amount, at::date AS at FROM " + schema + ".texts", fatal: true,
			want: []string{`column "name": PostgreSQL type integer does not fit the table's type VARCHAR`, `column "amount": PostgreSQL type double precision does not fit the table's type DECIMAL(10,2)`, `column "at": PostgreSQL type date`}},
		{name: "missing column", query: "SELECT id, name, amount FROM " + schema + ".people", fatal: true, want: []string{`column "at" is missing from the query's result (its columns: "id", "name", "amount")`}},
		{name: "duplicate column", query: "SELECT p.*, p.id FROM " + schema + ".people p", fatal: true, want: []string{`column "id": the query's result has 2 columns of that name`}},
		{name: "missing table", query: "SELECT * FROM " + schema + ".nope", fatal: true, want: []string{"42P01", "nope"}},
		{name: "syntax error", query: "SELEKT 1", fatal: true, want: []string{"42601"}},
		{name: "unknown role", uri: "postgres://nosuchuser:s3cret@127.0.0.1:5432/test?sslmode=disable", query: sel, fatal: true, want: []string{"nosuchuser", "28000"}},
		{name: "unknown database", uri: "postgres://postgres@127.0.0.1:5432/sluice_no_such_db?sslmode=disable", query: sel, fatal: true, want: []string{"3D000"}},
		{name: "connection refused", uri: "postgres://postgres:s3cret@127.0.0.1:1/test?sslmode=disable&connect_timeout=5", query: sel, want: []string{"refused"}},
		{name: "bad uri", uri: "postgres://postgres:s3cret@127.0.0.1:5432:99/%zz", query: sel, fatal: true, want: []string{"transport.config.uri: not a valid connection string"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uri := tc.uri
			if uri == "" {
				uri = testURI
			}
			s := newInput(t, people, memory.DefaultAllocator, 100, fmt.Sprintf(`{"uri": %q, "query": %q}`, uri, tc.query))
			defer s.Close()
			err := s.Open(context.Background(), nil)
			require.Error(t, err)
			require.Equal(t, tc.fatal, errors.Is(err, connectors.ErrFatal), "%v", err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			require.NotContains(t, err.Error(), "s3cret")
			require.NoError(t, s.Close())
		})
	}
}

// TestInputReadErrors checks the values a table column cannot hold and
// keys that do not identify rows: fatal, naming the column.
func TestInputReadErrors(t *testing.T) {
	conn, schema := db(t)
	exec(t, conn, "CREATE TABLE "+schema+".people "+peopleDDL)
	exec(t, conn, "INSERT INTO "+schema+".people SELECT i, 'n' || (i % 3), i / 100.0, NULL FROM generate_series(1, 10) AS i")
	tbl := func(cols ...string) *arrow.Schema {
		x := &pipeline.Table{Name: "x"}
		for _, c := range cols {
			name, typ, _ := strings.Cut(c, " ")
			x.Columns = append(x.Columns, pipeline.Column{Name: name, Type: typ})
		}
		return schemaOf(t, x)
	}
	from := " FROM " + schema + ".people"
	for _, tc := range []struct {
		name   string
		schema *arrow.Schema
		query  string
		keys   []string
		want   string
	}{
		{name: "tinyint range", schema: tbl("v TINYINT"), query: "SELECT (id * 100)::int2 AS v" + from, want: `column "v" of row 2: 200 is out of the range of TINYINT`},
		{name: "decimal scale", schema: tbl("v DECIMAL(10,1)"), query: "SELECT amount AS v" + from, want: `column "v" of row 1: 0.01 has more decimal places than DECIMAL(10,1) holds`},
		{name: "decimal precision", schema: tbl("v DECIMAL(3,2)"), query: "SELECT amount * 1000 AS v" + from, want: "more digits than DECIMAL(3,2) holds"},
		{name: "not null", schema: schemaOf(t, &pipeline.Table{Name: "x", Columns: []pipeline.Column{{Name: "at", Type: "TIMESTAMP", Nullable: new(bool)}}}), query: "SELECT at" + from, want: `column "at" of row 1 is NULL`},
		{name: "duplicate key", schema: tbl("name VARCHAR"), query: "SELECT name" + from, keys: []string{"name"}, want: "key_columns [name] are not unique in the query's result: key (n0) appears twice"},
		{name: "null key", schema: tbl("at TIMESTAMP"), query: "SELECT at" + from, keys: []string{"at"}, want: `key column "at" of row 1 is NULL`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
			defer mem.AssertSize(t, 0)
			s := newInput(t, tc.schema, mem, 100, inputConfig(tc.query, tc.keys...))
			defer s.Close()
			require.NoError(t, s.Open(context.Background(), nil))
			_, err := s.Read(context.Background())
			require.ErrorIs(t, err, connectors.ErrFatal)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestInputConfig checks validation, with Feldera's field names.
func TestInputConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    string
		format bool
		want   string
	}{
		{name: "ok", cfg: `{"uri": "postgres://h/db", "query": "SELECT 1", "key_columns": ["ID", "name"], "ssl_ca_location": "/ca.pem", "verify_hostname": false}`},
		{name: "required", cfg: `{}`, want: "transport.config.uri: required: postgres://user:password@host:port/database\ntransport.config.query: required"},
		{name: "only a semicolon", cfg: `{"uri": "u", "query": " ; "}`, want: "transport.config.query: required"},
		{name: "key not a column", cfg: `{"uri": "u", "query": "q", "key_columns": ["id", "nope"]}`, want: `transport.config.key_columns[1]: "nope" is not a column of the table`},
		{name: "key twice", cfg: `{"uri": "u", "query": "q", "key_columns": ["id", "ID"]}`, want: `transport.config.key_columns[1]: "ID" is named twice`},
		{name: "unknown field", cfg: `{"uri": "u", "query": "q", "table": "x"}`, want: `unknown field "table"`},
		{name: "client cert without key", cfg: `{"uri": "u", "query": "q", "ssl_client_location": "/c.pem"}`, want: "transport.config.ssl_client_key: give the client certificate"},
		{name: "bad ca", cfg: `{"uri": "u", "query": "q", "ssl_ca_pem": "nope"}`, want: "transport.config.ssl_ca_pem: no PEM certificate found"},
		{name: "format", cfg: `{"uri": "u", "query": "q"}`, format: true, want: "format.name: postgres_input reads typed columns and takes no format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := connectors.Params{Config: json.RawMessage(tc.cfg), Schema: people}
			if tc.format {
				p.Format = &pipeline.Format{Name: "json"}
			}
			s, err := NewInput(p)
			if tc.want == "" {
				require.NoError(t, err)
				require.Equal(t, []string{"id", "name"}, s.(*Input).cfg.KeyColumns)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}
