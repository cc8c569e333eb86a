package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/pipeline"
)

// InputConfig is postgres_input's transport config, with Feldera's field
// names (feldera-types transport/postgres.rs, PostgresReaderConfig; see
// https://docs.feldera.com/connectors/sources/postgresql) and Sluice's
// key_columns.
type InputConfig struct {
	// URI is the connection string, postgres://user:password@host:port/db
	// or key=value form (pgx's ParseConfig); give the password as
	// ${env:NAME}. It never appears in error messages.
	URI string `json:"uri"`
	// Query is the SELECT (or VALUES, TABLE, WITH ... SELECT) whose rows
	// are read, once: it is run as the subquery of
	// SELECT ... FROM (query) AS q, so it must not end with a semicolon
	// other than a trailing one, which is dropped.
	Query string `json:"query"`
	// KeyColumns names columns of the query's result (and of the table)
	// that identify its rows, a primary key: set, the rows are read in
	// key order and the checkpoint is the last key read, so a resume
	// neither skips nor repeats a row (exactly once). The columns must be
	// unique and not NULL over the query's result, and have a btree order
	// (not json, say). Empty, a resume skips as many rows as were read
	// (at least once, see [Input.Guarantee]).
	KeyColumns []string `json:"key_columns,omitempty"`

	// TLSOptions are the ssl_* options and verify_hostname, as
	// postgres_output's.
	TLSOptions
}

// ParseInputConfig decodes and validates a postgres_input config against
// the table's schema, reporting every problem at once with its field
// ("transport.config.query: required").
func ParseInputConfig(raw json.RawMessage, schema *arrow.Schema) (InputConfig, error) {
	var c InputConfig
	if err := connectors.DecodeConfig("transport", raw, &c); err != nil {
		return c, err
	}
	return c, c.Validate(schema)
}

// Validate reports every config problem at once, with its field. Key
// columns must be columns of schema, the table's: matched exactly or
// else case-insensitively, they are rewritten to the table's spelling.
// It drops a trailing semicolon from Query.
func (c *InputConfig) Validate(schema *arrow.Schema) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, connectors.TransportError(field, format, args...))
	}
	if strings.TrimSpace(c.URI) == "" {
		bad("uri", "required: postgres://user:password@host:port/database")
	}
	c.Query = strings.TrimRight(strings.TrimSpace(c.Query), "; \t\r\n")
	if c.Query == "" {
		bad("query", "required: the SELECT whose rows to read")
	}
	seen := map[string]bool{}
	for i, k := range c.KeyColumns {
		f := fieldIndex(schema, k)
		switch {
		case f < 0:
			bad(fmt.Sprintf("key_columns[%d]", i), "%q is not a column of the table", k)
		case seen[schema.Field(f).Name]:
			bad(fmt.Sprintf("key_columns[%d]", i), "%q is named twice", k)
		default:
			c.KeyColumns[i] = schema.Field(f).Name
			seen[schema.Field(f).Name] = true
		}
	}
	errs = append(errs, c.TLSOptions.validate()...)
	return errors.Join(errs...)
}

// fieldIndex finds the field named name in schema, exactly or else
// case-insensitively when that is unambiguous; -1 if none.
func fieldIndex(schema *arrow.Schema, name string) int {
	if schema == nil {
		return -1
	}
	if ix := schema.FieldIndices(name); len(ix) == 1 {
		return ix[0]
	}
	found := -1
	for i, f := range schema.Fields() {
		if strings.EqualFold(f.Name, name) {
			if found >= 0 {
				return -1
			}
			found = i
		}
	}
	return found
}

// InputCheckpoint is postgres_input's checkpoint, as JSON: {"rows": N}
// without key_columns, the rows read so far; {"rows": N, "key_columns":
// [...], "key": [...]} with them, Key holding the last key read, each
// value as PostgreSQL's text output of it (k::text), which casts back to
// the same value.
type InputCheckpoint struct {
	// Rows counts the rows read since the beginning of input.
	Rows int64 `json:"rows"`
	// KeyColumns are the key_columns the key belongs to.
	KeyColumns []string `json:"key_columns,omitempty"`
	// Key is the last key read, one text value per key column.
	Key []string `json:"key,omitempty"`
}

// cursorName is the cursor Input reads through.
const cursorName = "_sluice_input"

// Input is the postgres_input source: it reads the rows of a query once,
// as a snapshot, then reaches end of input (Feldera's PostgreSQL input
// connector, https://docs.feldera.com/connectors/sources/postgresql).
//
// Open connects, begins a REPEATABLE READ READ ONLY transaction, checks
// the query's result columns against the table's (by name; query columns
// the table lacks are ignored) and declares a cursor on the query; Read
// fetches at most Params.BatchSize rows from it. With key_columns the
// cursor orders by the key and starts after the checkpoint's key
// (keyset pagination), so the source is exactly once; without, a resume
// reruns the query and skips the rows the checkpoint counts. Its methods
// are called from one goroutine (see connectors.Source); each batch
// returned belongs to the caller, which releases it.
type Input struct {
	p    connectors.Params
	cfg  InputConfig
	keys []int // indexes into the schema of the key columns

	conn   *pgx.Conn
	tx     pgx.Tx
	fetch  string  // the FETCH statement
	cols   []inCol // one per schema field
	cp     InputCheckpoint
	done   bool // the cursor is exhausted
	types  *pgtype.Map
	change *arrow.Schema
}

// inCol is the query's result column read into a table column.
type inCol struct {
	field  arrow.Field
	name   string // in the query's result
	pgType string // format_type of its type, for messages and casts
	oid    uint32 // the type's oid, or its base type's for a domain
	cast   string // the type the SELECT casts the column to, if any
}

var (
	_ connectors.Source     = (*Input)(nil)
	_ connectors.Guaranteed = (*Input)(nil)
)

// NewInput is postgres_input's factory: it validates the config against
// the table's schema (no I/O) and returns a source ready to Open. Errors
// are connectors.FieldErrors joined with errors.Join; postgres_input
// takes no format.
func NewInput(p connectors.Params) (connectors.Source, error) {
	if p.Schema == nil {
		return nil, connectors.Fatal(errors.New("postgres_input: no table schema"))
	}
	cfg, err := ParseInputConfig(p.Config, p.Schema)
	if p.Format != nil {
		err = errors.Join(err, &connectors.FieldError{Section: "format", Field: "name", Err: errors.New("postgres_input reads typed columns and takes no format")})
	}
	if err != nil {
		return nil, err
	}
	s := &Input{p: p, cfg: cfg, change: pipeline.WithWeight(p.Schema)}
	for _, k := range cfg.KeyColumns {
		s.keys = append(s.keys, fieldIndex(p.Schema, k))
	}
	return s, nil
}

// Bounded is true: postgres_input reaches end of input after the query's
// last row.
func (s *Input) Bounded() bool { return true }

// Guarantee implements connectors.Guaranteed: exactly once with
// key_columns; at least once without, and then only if the query returns
// its rows in the same order every time it runs (an ORDER BY on a unique
// key), since a resume skips the number of rows already read.
func (s *Input) Guarantee() connectors.Guarantee {
	if len(s.cfg.KeyColumns) > 0 {
		return connectors.ExactlyOnce
	}
	return connectors.AtLeastOnce
}

// Open connects, checks the query's columns against the table's and
// positions the source just past checkpoint (nil: the beginning). Bad
// credentials, a missing database, a query PostgreSQL rejects (syntax, a
// missing relation), a column missing from the result or of a type that
// does not fit the table's, and a checkpoint of other key_columns are
// Fatal; an unreachable server is retryable.
func (s *Input) Open(ctx context.Context, checkpoint connectors.Checkpoint) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("open postgres_input %s: %w", s.p.Endpoint, err)
		}
	}()
	_ = s.Close()
	s.cp, s.done = InputCheckpoint{}, false
	if len(checkpoint) > 0 {
		if err := json.Unmarshal(checkpoint, &s.cp); err != nil {
			return connectors.Fatal(fmt.Errorf("checkpoint %s: %w", checkpoint, err))
		}
	}
	if err := s.checkCheckpoint(); err != nil {
		return err
	}
	pc, err := connConfig(s.cfg.URI, &s.cfg.TLSOptions)
	if err != nil {
		return err
	}
	s.conn, err = pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return classify(err)
	}
	s.types = s.conn.TypeMap()
	s.tx, err = s.conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return classify(err)
	}
	if err := s.describe(ctx); err != nil {
		return err
	}
	sql, args := s.cursorSQL()
	if _, err := s.tx.Exec(ctx, sql, args...); err != nil {
		return classify(err)
	}
	if len(s.keys) == 0 && s.cp.Rows > 0 {
		if _, err := s.tx.Exec(ctx, "MOVE FORWARD "+strconv.FormatInt(s.cp.Rows, 10)+" IN "+cursorName); err != nil {
			return classify(err)
		}
	}
	s.fetch = "FETCH FORWARD " + strconv.Itoa(s.batchSize()) + " FROM " + cursorName
	return nil
}

// checkCheckpoint checks that the checkpoint was written with the
// configured key_columns.
func (s *Input) checkCheckpoint() error {
	cp := s.cp
	switch {
	case cp.Rows < 0:
		return connectors.Fatal(fmt.Errorf("checkpoint counts %d rows", cp.Rows))
	case len(s.keys) == 0 && len(cp.Key) > 0:
		return connectors.Fatal(fmt.Errorf("the checkpoint holds a key of key_columns %v, but the config has no key_columns: restore them, or reset the connector's checkpoint to read the query from its start", cp.KeyColumns))
	case len(s.keys) > 0 && len(cp.Key) == 0 && cp.Rows > 0:
		return connectors.Fatal(fmt.Errorf("the checkpoint counts %d rows read without key_columns, which cannot resume by key: remove key_columns, or reset the connector's checkpoint to read the query from its start", cp.Rows))
	case len(cp.Key) > 0 && (!slices.Equal(cp.KeyColumns, s.cfg.KeyColumns) || len(cp.Key) != len(cp.KeyColumns)):
		return connectors.Fatal(fmt.Errorf("the checkpoint holds a key of key_columns %v, but the config has key_columns %v: restore them, or reset the connector's checkpoint to read the query from its start", cp.KeyColumns, s.cfg.KeyColumns))
	}
	return nil
}

// batchSize is Params.BatchSize, or Sluice's default when unset.
func (s *Input) batchSize() int {
	if s.p.BatchSize > 0 {
		return s.p.BatchSize
	}
	return pipeline.DefaultMaxBatchSize
}

// connConfig parses uri and applies the TLS options. Errors never quote
// the URI, which may hold a password.
func connConfig(uri string, t *TLSOptions) (*pgx.ConnConfig, error) {
	pc, err := pgx.ParseConfig(uri)
	if err != nil {
		return nil, connectors.Fatal(connectors.TransportError("uri", "not a valid connection string (postgres://user:password@host:port/database or key=value pairs; not shown, as it may hold a password)"))
	}
	tc, err := t.tlsConfig(pc.Host)
	if err != nil {
		return nil, connectors.Fatal(err)
	}
	if tc != nil {
		pc.TLSConfig, pc.Fallbacks = tc, nil
	}
	// Text output that casts back to the same value: shortest exact
	// floats, ISO dates.
	for k, v := range map[string]string{"extra_float_digits": "3", "datestyle": "ISO, YMD", "bytea_output": "hex"} {
		pc.RuntimeParams[k] = v
	}
	return pc, nil
}

// describe prepares the query to learn its result columns and matches
// them to the table's, reporting every mismatch at once.
func (s *Input) describe(ctx context.Context) error {
	sd, err := s.conn.PgConn().Prepare(ctx, "", "SELECT * FROM ("+s.cfg.Query+") AS q", nil)
	if err != nil {
		return classify(err)
	}
	oids := make([]int64, len(sd.Fields))
	mods := make([]int32, len(sd.Fields))
	for i, f := range sd.Fields {
		oids[i], mods[i] = int64(f.DataTypeOID), f.TypeModifier
	}
	type result struct {
		name, pgType string
		base         uint32
		baseType     string
		typtype      string
	}
	res := make([]result, len(sd.Fields))
	rows, err := s.tx.Query(ctx, `
SELECT format_type(t.oid, u.m), coalesce(b.oid, t.oid), format_type(coalesce(b.oid, t.oid), CASE WHEN b.oid IS NULL THEN u.m ELSE t.typtypmod END),
       coalesce(b.typtype, t.typtype)::text
FROM unnest($1::int8[], $2::int4[]) WITH ORDINALITY AS u(o, m, n)
JOIN pg_type t ON t.oid = u.o::oid
LEFT JOIN pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype
ORDER BY u.n`, oids, mods)
	if err != nil {
		return classify(err)
	}
	i := 0
	for rows.Next() {
		if i >= len(res) {
			break
		}
		res[i].name = sd.Fields[i].Name
		if err := rows.Scan(&res[i].pgType, &res[i].base, &res[i].baseType, &res[i].typtype); err != nil {
			rows.Close()
			return classify(err)
		}
		i++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return classify(err)
	}
	if i != len(res) {
		return fmt.Errorf("the types of the query's %d columns: found %d in pg_type", len(res), i)
	}

	find := func(name string) (int, error) {
		var exact, folded []int
		for i, r := range res {
			if r.name == name {
				exact = append(exact, i)
			} else if strings.EqualFold(r.name, name) {
				folded = append(folded, i)
			}
		}
		if len(exact) == 0 {
			exact = folded
		}
		switch len(exact) {
		case 0:
			return -1, fmt.Errorf("column %q is missing from the query's result (its columns: %s)", name, s.resultNames(sd.Fields))
		case 1:
			return exact[0], nil
		}
		return -1, fmt.Errorf("column %q: the query's result has %d columns of that name; give them distinct names (AS)", name, len(exact))
	}
	var errs []error
	s.cols = make([]inCol, len(s.p.Schema.Fields()))
	for i, f := range s.p.Schema.Fields() {
		j, err := find(f.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r := res[j]
		c := inCol{field: f, name: r.name, pgType: r.pgType, oid: r.base}
		if r.base != uint32(oids[j]) {
			c.cast = r.baseType // a domain: read its base type
		}
		ok, asText := readable(f.Type, r.base, r.typtype)
		if !ok {
			errs = append(errs, fmt.Errorf("column %q: PostgreSQL type %s does not fit the table's type %s (want %s)", f.Name, r.pgType, sqlName(f.Type), readableTypes(f.Type)))
			continue
		}
		if asText {
			c.cast, c.oid = "text", oidText
		}
		s.cols[i] = c
	}
	if len(errs) > 0 {
		return connectors.Fatal(errors.Join(errs...))
	}
	return nil
}

func (s *Input) resultNames(fields []pgconn.FieldDescription) string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = strconv.Quote(f.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// cursorSQL is the DECLARE of the cursor and its arguments: the table's
// columns, then the key columns as text, past the checkpoint's key in key
// order.
func (s *Input) cursorSQL() (string, []any) {
	sel := make([]string, 0, len(s.cols)+len(s.keys))
	for _, c := range s.cols {
		e := "q." + pgx.Identifier{c.name}.Sanitize()
		if c.cast != "" {
			e += "::" + c.cast
		}
		sel = append(sel, e)
	}
	var keys, params []string
	var args []any
	for i, k := range s.keys {
		c := s.cols[k]
		id := "q." + pgx.Identifier{c.name}.Sanitize()
		sel = append(sel, id+"::text")
		keys = append(keys, id)
		if len(s.cp.Key) > 0 {
			params = append(params, fmt.Sprintf("$%d::text::%s", i+1, c.pgType))
			args = append(args, s.cp.Key[i])
		}
	}
	sql := "DECLARE " + cursorName + " NO SCROLL CURSOR FOR SELECT " + strings.Join(sel, ", ") + " FROM (" + s.cfg.Query + ") AS q"
	if len(args) > 0 {
		sql += " WHERE (" + strings.Join(keys, ", ") + ") > (" + strings.Join(params, ", ") + ")"
	}
	if len(keys) > 0 {
		sql += " ORDER BY " + strings.Join(keys, ", ")
	}
	return sql, args
}

// Read fetches at most Params.BatchSize rows into a record batch of the
// table's change schema (weight 1) and returns it with the checkpoint
// after its last row; connectors.ErrEndOfInput once the query's rows are
// all read. Batch.Bytes counts the bytes of the values received. A value
// the table's column cannot hold (out of a TINYINT's range, more decimal
// places than the DECIMAL's scale), a NULL key and a key read twice are
// Fatal; a broken connection is retryable, and ctx's end returns
// ctx.Err().
func (s *Input) Read(ctx context.Context) (connectors.Batch, error) {
	if s.done {
		return connectors.Batch{}, connectors.ErrEndOfInput
	}
	if s.tx == nil {
		return connectors.Batch{}, fmt.Errorf("postgres_input %s: not open", s.p.Endpoint)
	}
	b, err := s.read(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return connectors.Batch{}, ctx.Err()
		}
		return connectors.Batch{}, fmt.Errorf("read postgres_input %s: %w", s.p.Endpoint, err)
	}
	return b, nil
}

func (s *Input) read(ctx context.Context) (connectors.Batch, error) {
	rows, err := s.tx.Query(ctx, s.fetch)
	if err != nil {
		return connectors.Batch{}, classify(err)
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	if len(fields) != len(s.cols)+len(s.keys) {
		return connectors.Batch{}, fmt.Errorf("the cursor returns %d columns, want %d", len(fields), len(s.cols)+len(s.keys))
	}
	rb := array.NewRecordBuilder(s.p.Alloc(), s.change)
	defer rb.Release()
	decs := make([]decoder, len(s.cols))
	for i, c := range s.cols {
		decs[i] = s.decoder(c, fields[i], rb.Field(i))
	}
	weight := rb.Field(len(s.cols)).(*array.Int64Builder)
	var n, bytes int64
	// The previous row's key, as the server's text, in buffers reused
	// from row to row.
	key := make([][]byte, len(s.keys))
	for i, k := range s.cp.Key {
		key[i] = []byte(k)
	}
	haveKey := len(s.cp.Key) > 0
	for rows.Next() {
		raw := rows.RawValues()
		row := s.cp.Rows + n + 1
		for i, d := range decs {
			bytes += int64(len(raw[i]))
			if raw[i] == nil {
				if !s.cols[i].field.Nullable {
					return connectors.Batch{}, connectors.Fatal(fmt.Errorf("column %q of row %d is NULL, but the table's column is NOT NULL", s.cols[i].field.Name, row))
				}
				rb.Field(i).AppendNull()
				continue
			}
			if err := d(raw[i]); err != nil {
				return connectors.Batch{}, connectors.Fatal(fmt.Errorf("column %q of row %d: %w", s.cols[i].field.Name, row, err))
			}
		}
		if len(s.keys) > 0 {
			same := haveKey
			for i := range s.keys {
				v := raw[len(s.cols)+i]
				if v == nil {
					return connectors.Batch{}, connectors.Fatal(fmt.Errorf("key column %q of row %d is NULL: key_columns must not be NULL", s.cfg.KeyColumns[i], row))
				}
				same = same && string(v) == string(key[i])
				key[i] = append(key[i][:0], v...)
			}
			if same {
				return connectors.Batch{}, connectors.Fatal(fmt.Errorf("key_columns %v are not unique in the query's result: key (%s) appears twice at row %d; give key_columns that identify rows, as a primary key does", s.cfg.KeyColumns, truncate(joinKey(key), 200), row))
			}
			haveKey = true
		}
		weight.Append(1)
		n++
	}
	if err := rows.Err(); err != nil {
		return connectors.Batch{}, classify(err)
	}
	if n == 0 {
		s.done = true
		return connectors.Batch{}, connectors.ErrEndOfInput
	}
	if n < int64(s.batchSize()) {
		s.done = true // the cursor is exhausted: the next Read ends input
	}
	cp := InputCheckpoint{Rows: s.cp.Rows + n}
	if len(s.keys) > 0 {
		cp.KeyColumns, cp.Key = s.cfg.KeyColumns, make([]string, len(key))
		for i, k := range key {
			cp.Key[i] = string(k)
		}
	}
	raw, err := json.Marshal(cp)
	if err != nil {
		return connectors.Batch{}, err
	}
	s.cp = cp
	return connectors.Batch{Record: rb.NewRecordBatch(), Checkpoint: raw, Bytes: bytes}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Close ends the transaction and closes the connection. It is safe after
// a failed Open.
func (s *Input) Close() error {
	s.tx = nil
	if s.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.conn.Close(ctx) // the read-only transaction ends with it
	s.conn = nil
	return err
}

// readable reports whether a PostgreSQL column of type oid (a base type,
// of pg_type.typtype typtype) can be read into a table column of Arrow
// type dt without losing values, and whether it is read as its text
// (json, jsonb, uuid, enums into strings).
func readable(dt arrow.DataType, oid uint32, typtype string) (ok, asText bool) {
	switch dt.ID() {
	case arrow.BOOL:
		return oid == oidBool, false
	case arrow.INT8, arrow.INT16:
		return oid == oidInt2, false
	case arrow.INT32:
		return oid == oidInt2 || oid == oidInt4, false
	case arrow.INT64:
		return oid == oidInt2 || oid == oidInt4 || oid == oidInt8, false
	case arrow.FLOAT32:
		return oid == oidFloat4, false
	case arrow.FLOAT64:
		return oid == oidFloat4 || oid == oidFloat8, false
	case arrow.DECIMAL128:
		return oid == oidNumeric || oid == oidInt2 || oid == oidInt4 || oid == oidInt8, false
	case arrow.STRING, arrow.LARGE_STRING:
		switch {
		case oid == oidText || oid == oidVarchar || oid == oidBPChar || oid == oidName:
			return true, false
		case oid == oidJSON || oid == oidJSONB || oid == oidUUID || typtype == "e":
			return true, true
		}
		return false, false
	case arrow.BINARY, arrow.LARGE_BINARY:
		return oid == oidBytea, false
	case arrow.DATE32:
		return oid == oidDate, false
	case arrow.TIME64:
		return oid == oidTime, false
	case arrow.TIMESTAMP:
		return oid == oidTimestamp || oid == oidTimestampTZ, false
	}
	return false, false
}

// PostgreSQL type OIDs only the input reads (pg_type.dat).
const (
	oidName = 19
	oidUUID = 2950
)

// readableTypes names the PostgreSQL types readable into dt, for messages.
func readableTypes(dt arrow.DataType) string {
	switch dt.ID() {
	case arrow.BOOL:
		return "boolean"
	case arrow.INT8, arrow.INT16:
		return "smallint"
	case arrow.INT32:
		return "smallint or integer"
	case arrow.INT64:
		return "smallint, integer or bigint"
	case arrow.FLOAT32:
		return "real"
	case arrow.FLOAT64:
		return "real or double precision"
	case arrow.DECIMAL128:
		return "numeric, smallint, integer or bigint"
	case arrow.STRING, arrow.LARGE_STRING:
		return "text, varchar, char, name, json, jsonb, uuid or an enum"
	case arrow.BINARY, arrow.LARGE_BINARY:
		return "bytea"
	case arrow.DATE32:
		return "date"
	case arrow.TIME64:
		return "time"
	case arrow.TIMESTAMP:
		return "timestamp or timestamptz"
	}
	return "none: postgres_input cannot read this column type"
}

// sqlName names an Arrow type by the SQL type a table declares for it.
func sqlName(dt arrow.DataType) string {
	switch t := dt.(type) {
	case *arrow.BooleanType:
		return "BOOLEAN"
	case *arrow.Int8Type:
		return "TINYINT"
	case *arrow.Int16Type:
		return "SMALLINT"
	case *arrow.Int32Type:
		return "INT"
	case *arrow.Int64Type:
		return "BIGINT"
	case *arrow.Float32Type:
		return "REAL"
	case *arrow.Float64Type:
		return "DOUBLE"
	case *arrow.Decimal128Type:
		return fmt.Sprintf("DECIMAL(%d,%d)", t.Precision, t.Scale)
	case *arrow.StringType, *arrow.LargeStringType:
		return "VARCHAR"
	case *arrow.BinaryType, *arrow.LargeBinaryType:
		return "VARBINARY"
	case *arrow.Date32Type:
		return "DATE"
	case *arrow.Time64Type:
		return "TIME"
	case *arrow.TimestampType:
		return "TIMESTAMP"
	}
	return dt.String()
}

// decoder appends one non-NULL value, as received, to its column's
// builder.
type decoder func(raw []byte) error

// decoder returns the decoder of result column f (read as c says) into
// builder b; readable(c.field.Type, c.oid) holds.
func (s *Input) decoder(c inCol, f pgconn.FieldDescription, b array.Builder) decoder {
	m := s.types
	switch b := b.(type) {
	case *array.BooleanBuilder:
		return scanInto(m, f, func(v bool) error {
			b.Append(v)
			return nil
		})
	case *array.Int8Builder, *array.Int16Builder, *array.Int32Builder, *array.Int64Builder:
		var appendInt func(int64) error
		switch b := b.(type) {
		case *array.Int8Builder:
			appendInt = func(v int64) error {
				if v < math.MinInt8 || v > math.MaxInt8 {
					return fmt.Errorf("%d is out of the range of TINYINT", v)
				}
				b.Append(int8(v))
				return nil
			}
		case *array.Int16Builder:
			appendInt = func(v int64) error { b.Append(int16(v)); return nil }
		case *array.Int32Builder:
			appendInt = func(v int64) error { b.Append(int32(v)); return nil }
		case *array.Int64Builder:
			appendInt = func(v int64) error { b.Append(v); return nil }
		}
		return scanInto(m, f, appendInt)
	case *array.Float32Builder:
		return scanInto(m, f, func(v float32) error {
			b.Append(v)
			return nil
		})
	case *array.Float64Builder:
		return scanInto(m, f, func(v float64) error {
			b.Append(v)
			return nil
		})
	case *array.Decimal128Builder:
		dt := c.field.Type.(*arrow.Decimal128Type)
		if c.oid != oidNumeric {
			return scanInto(m, f, func(v int64) error {
				return appendDecimal(b, dt, big.NewInt(v), 0)
			})
		}
		return scanInto(m, f, func(v pgtype.Numeric) error {
			if v.NaN || v.InfinityModifier != pgtype.Finite {
				return fmt.Errorf("%s cannot be held by %s", numericText(v), sqlName(dt))
			}
			return appendDecimal(b, dt, v.Int, v.Exp)
		})
	case *array.StringBuilder:
		// Text types arrive as their UTF-8 bytes in both formats.
		return func(raw []byte) error { b.BinaryBuilder.Append(raw); return nil }
	case *array.LargeStringBuilder:
		return func(raw []byte) error { b.BinaryBuilder.Append(raw); return nil }
	case *array.BinaryBuilder:
		return scanInto(m, f, func(v []byte) error {
			b.Append(v)
			return nil
		})
	case *array.Date32Builder:
		return scanInto(m, f, func(v pgtype.Date) error {
			if v.InfinityModifier != pgtype.Finite {
				return fmt.Errorf("date %s cannot be held by DATE", v.InfinityModifier)
			}
			days := v.Time.Unix() / 86400
			if days < math.MinInt32 || days > math.MaxInt32 {
				return fmt.Errorf("date %s is out of DATE's range", v.Time.Format(time.DateOnly))
			}
			b.Append(arrow.Date32(days))
			return nil
		})
	case *array.Time64Builder:
		mul := int64(1)
		if b.Type().(*arrow.Time64Type).Unit == arrow.Nanosecond {
			mul = 1000
		}
		return scanInto(m, f, func(v pgtype.Time) error {
			b.Append(arrow.Time64(v.Microseconds * mul))
			return nil
		})
	case *array.TimestampBuilder:
		unit := b.Type().(*arrow.TimestampType).Unit
		conv := func(t time.Time) arrow.Timestamp {
			switch unit {
			case arrow.Second:
				return arrow.Timestamp(t.Unix())
			case arrow.Millisecond:
				return arrow.Timestamp(t.UnixMilli())
			case arrow.Nanosecond:
				return arrow.Timestamp(t.UnixNano())
			}
			return arrow.Timestamp(t.UnixMicro())
		}
		if c.oid == oidTimestampTZ {
			return scanInto(m, f, func(v pgtype.Timestamptz) error {
				if v.InfinityModifier != pgtype.Finite {
					return fmt.Errorf("timestamp %s cannot be held by TIMESTAMP", v.InfinityModifier)
				}
				b.Append(conv(v.Time.UTC()))
				return nil
			})
		}
		return scanInto(m, f, func(v pgtype.Timestamp) error {
			if v.InfinityModifier != pgtype.Finite {
				return fmt.Errorf("timestamp %s cannot be held by TIMESTAMP", v.InfinityModifier)
			}
			b.Append(conv(v.Time))
			return nil
		})
	}
	return func([]byte) error {
		return fmt.Errorf("postgres_input cannot read into %s", c.field.Type)
	}
}

// scanInto is a decoder that scans each value into a T with pgx's plan
// for the column's type and format (planned once), then hands it to add.
func scanInto[T any](m *pgtype.Map, f pgconn.FieldDescription, add func(T) error) decoder {
	var v T
	plan := m.PlanScan(f.DataTypeOID, f.Format, &v)
	return func(raw []byte) error {
		if err := plan.Scan(raw, &v); err != nil {
			return err
		}
		return add(v)
	}
}

var bigTen = big.NewInt(10)

// appendDecimal appends the number digits*10^exp to b, exactly: a value
// with more decimal places than the type's scale (other than trailing
// zeros) or more digits than its precision is an error.
func appendDecimal(b *array.Decimal128Builder, dt *arrow.Decimal128Type, digits *big.Int, exp int32) error {
	u := new(big.Int).Set(digits)
	shift := exp + dt.Scale
	if shift > 0 {
		u.Mul(u, new(big.Int).Exp(bigTen, big.NewInt(int64(shift)), nil))
	} else if shift < 0 {
		var rem big.Int
		u.QuoRem(u, new(big.Int).Exp(bigTen, big.NewInt(int64(-shift)), nil), &rem)
		if rem.Sign() != 0 {
			return fmt.Errorf("%s has more decimal places than %s holds", numericText(pgtype.Numeric{Int: digits, Exp: exp, Valid: true}), sqlName(dt))
		}
	}
	if u.CmpAbs(new(big.Int).Exp(bigTen, big.NewInt(int64(dt.Precision)), nil)) >= 0 {
		return fmt.Errorf("%s has more digits than %s holds", numericText(pgtype.Numeric{Int: digits, Exp: exp, Valid: true}), sqlName(dt))
	}
	b.Append(decimal128.FromBigInt(u))
	return nil
}

// numericText is v as PostgreSQL writes it, for messages.
func numericText(v pgtype.Numeric) string {
	if t, err := v.Value(); err == nil {
		if s, ok := t.(string); ok {
			return s
		}
	}
	return "the value"
}

// joinKey is a key's values, comma-separated, for messages.
func joinKey(key [][]byte) string {
	parts := make([]string, len(key))
	for i, k := range key {
		parts[i] = string(k)
	}
	return strings.Join(parts, ", ")
}
