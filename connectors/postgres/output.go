package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/pipeline"
)

// OffsetsTable is the table, in the destination table's schema, that holds
// every output's delivered table version: one row per (pipeline,
// table_name, connector) with its version and table_id (the Delta table
// id of the table the version belongs to), updated in the transaction
// that writes the data. Deleting an output's row makes it deliver its
// table again from the start.
const OffsetsTable = "_sluice_offsets"

// tempTable receives a materialized commit's changes before the merge; one
// per connection, emptied at every commit.
const tempTable = "_sluice_changes"

// ErrFenced is returned (retryably) when the destination's position moved
// while this sink was open: another attempt of the same output committed.
// Reopening returns the new position.
var ErrFenced = errors.New("position moved by another writer")

// Output is the postgres_output sink. It writes a table's changes to a
// PostgreSQL table in one transaction per Commit, with the delivered table
// version in _sluice_offsets, so it is exactly once. Its methods are called
// from one goroutine (see connectors.Sink).
type Output struct {
	p   connectors.SinkParams
	cfg Config

	conn      *pgx.Conn
	table     string   // schema-qualified, quoted
	offsets   string   // schema-qualified, quoted
	cols      []column // one per schema field
	pk        []int    // indexes into cols
	opOID     uint32
	tsOID     uint32
	copySQL   string
	delivered int64

	tx      pgx.Tx
	seq     int64 // changes written in the open transaction (materialized order)
	rows    int64 // rows copied in the open transaction
	deletes bool  // the open transaction has a negative weight
	sent    int64 // bytes sent, over the sink's life
	failed  error // a Write or Commit that failed: the changes are lost until reopened
}

type column struct {
	name   string // quoted
	raw    string // as in the catalog
	oid    uint32
	pgType string // format_type, for messages and the temporary table
}

var (
	_ connectors.Sink        = (*Output)(nil)
	_ connectors.Guaranteed  = (*Output)(nil)
	_ connectors.SinkMetrics = (*Output)(nil)
)

// NewOutput is postgres_output's factory: it validates the config (no
// I/O) and returns a sink ready to Open.
func NewOutput(p connectors.SinkParams) (connectors.Sink, error) {
	cfg, err := ParseConfig(p.Config, p.PrimaryKey)
	if err != nil {
		return nil, err
	}
	if p.Schema == nil {
		return nil, connectors.Fatal(errors.New("postgres_output: no table schema"))
	}
	for _, k := range p.PrimaryKey {
		if len(p.Schema.FieldIndices(k)) == 0 {
			return nil, connectors.TransportError("mode", "primary key column %q is not a column of the table", k)
		}
	}
	return &Output{p: p, cfg: cfg, delivered: -1}, nil
}

// Guarantee implements connectors.Guaranteed: the data and the position
// commit in one PostgreSQL transaction.
func (o *Output) Guarantee() connectors.Guarantee { return connectors.ExactlyOnce }

// Transmitted implements connectors.SinkMetrics: the bytes of COPY data
// sent (binary format), and no encoding errors.
func (o *Output) Transmitted() (bytes int64, encodeErrors int64) { return o.sent, 0 }

// Open connects, checks the destination table and its columns, creates
// _sluice_offsets if absent and returns the delivered version (-1 if
// none). Bad credentials, a missing database or table and a column that
// does not fit are Fatal; an unreachable server is retryable.
func (o *Output) Open(ctx context.Context) (delivered int64, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("open postgres_output %s: %w", o.p.Endpoint, err)
		}
	}()
	o.failed = nil
	pc, err := pgx.ParseConfig(o.cfg.URI)
	if err != nil {
		return -1, connectors.Fatal(connectors.TransportError("uri", "%v", err))
	}
	tc, err := o.cfg.tlsConfig(pc.Host)
	if err != nil {
		return -1, connectors.Fatal(err)
	}
	if tc != nil {
		pc.TLSConfig, pc.Fallbacks = tc, nil
	}
	o.conn, err = pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return -1, classify(err)
	}
	if err := o.checkTable(ctx); err != nil {
		return -1, err
	}
	if err := o.openOffsets(ctx); err != nil {
		return -1, err
	}
	if o.cfg.Mode == ModeMaterialized {
		defs := make([]string, 0, len(o.cols)+2)
		for _, c := range o.cols {
			defs = append(defs, c.name+" "+c.pgType)
		}
		defs = append(defs, "_sluice_w bigint", "_sluice_seq bigint")
		if _, err := o.conn.Exec(ctx, "CREATE TEMP TABLE IF NOT EXISTS "+tempTable+" ("+strings.Join(defs, ", ")+") ON COMMIT DELETE ROWS"); err != nil {
			return -1, classify(err)
		}
	}
	names := make([]string, 0, len(o.cols)+2)
	for _, c := range o.cols {
		names = append(names, c.name)
	}
	if o.cfg.Mode == ModeCDC {
		names = append(names, pgx.Identifier{o.cfg.CDCOpColumn}.Sanitize(), pgx.Identifier{o.cfg.CDCTSColumn}.Sanitize())
		o.copySQL = "COPY " + o.table + " (" + strings.Join(names, ", ") + ") FROM STDIN (FORMAT binary)"
	} else {
		names = append(names, "_sluice_w", "_sluice_seq")
		o.copySQL = "COPY " + tempTable + " (" + strings.Join(names, ", ") + ") FROM STDIN (FORMAT binary)"
	}
	return o.delivered, nil
}

// checkTable finds the table and matches the schema's columns (and the
// cdc columns) to its columns, reporting every mismatch at once.
func (o *Output) checkTable(ctx context.Context) error {
	var oid uint32
	var schema string
	err := o.conn.QueryRow(ctx, `
SELECT c.oid, n.nspname, quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = coalesce(to_regclass(quote_ident($1)),
    CASE WHEN strpos($1, '.') > 0 THEN to_regclass(quote_ident(split_part($1, '.', 1)) || '.' || quote_ident(substr($1, strpos($1, '.') + 1))) END)`,
		o.cfg.Table).Scan(&oid, &schema, &o.table, new(string))
	if errors.Is(err, pgx.ErrNoRows) {
		return connectors.Fatal(fmt.Errorf("table %q does not exist in database %q", o.cfg.Table, o.conn.Config().Database))
	}
	if err != nil {
		return classify(err)
	}
	o.offsets = pgx.Identifier{schema, OffsetsTable}.Sanitize()

	type attr struct {
		name         string
		oid          uint32
		pgType       string
		notNull, def bool
		generated    bool
		used         bool
	}
	rows, err := o.conn.Query(ctx, `
SELECT a.attname, CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END,
       format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef OR a.attidentity <> '', a.attgenerated <> ''
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, oid)
	if err != nil {
		return classify(err)
	}
	var attrs []*attr
	for rows.Next() {
		a := &attr{}
		if err := rows.Scan(&a.name, &a.oid, &a.pgType, &a.notNull, &a.def, &a.generated); err != nil {
			rows.Close()
			return classify(err)
		}
		attrs = append(attrs, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return classify(err)
	}
	find := func(name string) *attr {
		for _, a := range attrs {
			if a.name == name {
				return a
			}
		}
		var found *attr
		for _, a := range attrs { // an unquoted SQL name, folded
			if strings.EqualFold(a.name, name) {
				if found != nil {
					return nil
				}
				found = a
			}
		}
		return found
	}
	var errs []error
	o.cols = make([]column, len(o.p.Schema.Fields()))
	for i, f := range o.p.Schema.Fields() {
		a := find(f.Name)
		switch {
		case a == nil:
			errs = append(errs, fmt.Errorf("column %q is missing from table %s", f.Name, o.table))
			continue
		case a.generated:
			errs = append(errs, fmt.Errorf("column %q of table %s is generated and cannot be written", f.Name, o.table))
		case !fits(f.Type, a.oid):
			errs = append(errs, fmt.Errorf("column %q: PostgreSQL type %s does not fit Sluice type %s (want %s)", f.Name, a.pgType, f.Type, fittingTypes(f.Type)))
		}
		a.used = true
		o.cols[i] = column{name: pgx.Identifier{a.name}.Sanitize(), raw: a.name, oid: a.oid, pgType: a.pgType}
	}
	if o.cfg.Mode == ModeCDC {
		if a := find(o.cfg.CDCOpColumn); a == nil {
			errs = append(errs, fmt.Errorf("cdc_op_column %q is missing from table %s (want a text, varchar or char column)", o.cfg.CDCOpColumn, o.table))
		} else if a.used = true; a.oid != oidText && a.oid != oidVarchar && a.oid != oidBPChar {
			errs = append(errs, fmt.Errorf("cdc_op_column %q: PostgreSQL type %s does not fit the operation 'i'/'d' (want text, varchar or char)", a.name, a.pgType))
		} else {
			o.cfg.CDCOpColumn, o.opOID = a.name, a.oid
		}
		if a := find(o.cfg.CDCTSColumn); a == nil {
			errs = append(errs, fmt.Errorf("cdc_ts_column %q is missing from table %s (want a timestamp, timestamptz or bigint column)", o.cfg.CDCTSColumn, o.table))
		} else if a.used = true; a.oid != oidTimestamp && a.oid != oidTimestampTZ && a.oid != oidInt8 && a.oid != oidText && a.oid != oidVarchar {
			errs = append(errs, fmt.Errorf("cdc_ts_column %q: PostgreSQL type %s does not fit a timestamp (want timestamp, timestamptz, bigint microseconds or text)", a.name, a.pgType))
		} else {
			o.cfg.CDCTSColumn, o.tsOID = a.name, a.oid
		}
	}
	for _, a := range attrs {
		if !a.used && a.notNull && !a.def && !a.generated {
			errs = append(errs, fmt.Errorf("column %q of table %s is NOT NULL without a default, and the table has no such column", a.name, o.table))
		}
	}
	if o.cfg.Mode == ModeMaterialized && len(errs) == 0 {
		if err := o.checkKey(ctx, oid); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return connectors.Fatal(errors.Join(errs...))
	}
	return nil
}

// checkKey finds the primary key's columns and a unique index on exactly
// them, which INSERT ... ON CONFLICT needs.
func (o *Output) checkKey(ctx context.Context, oid uint32) error {
	o.pk = o.pk[:0]
	var want, names []string
	for _, k := range o.p.PrimaryKey {
		i := o.p.Schema.FieldIndices(k)[0]
		o.pk = append(o.pk, i)
		want = append(want, o.cols[i].name)
		names = append(names, o.cols[i].raw)
	}
	sort.Strings(want)
	rows, err := o.conn.Query(ctx, `
SELECT array_agg(quote_ident(a.attname)::text ORDER BY 1)
FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = $1 AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
GROUP BY i.indexrelid`, oid)
	if err != nil {
		return classify(err)
	}
	defer rows.Close()
	for rows.Next() {
		var got []string
		if err := rows.Scan(&got); err != nil {
			return classify(err)
		}
		for i := range got { // quote_ident may leave names bare; compare as Sanitize does
			got[i] = pgx.Identifier{strings.Trim(got[i], `"`)}.Sanitize()
		}
		sort.Strings(got)
		if strings.Join(got, ",") == strings.Join(want, ",") {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return classify(err)
	}
	return fmt.Errorf("table %s has no primary key or unique index on exactly (%s), the table's primary key, which mode materialized upserts by", o.table, strings.Join(names, ", "))
}

// openOffsets creates _sluice_offsets if absent, makes sure this output's
// row exists and reads its version.
func (o *Output) openOffsets(ctx context.Context) error {
	_, err := o.conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+o.offsets+` (
  pipeline text NOT NULL, table_name text NOT NULL, connector text NOT NULL, version bigint NOT NULL,
  table_id text,
  PRIMARY KEY (pipeline, table_name, connector))`)
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P07") {
		err = nil // created concurrently by another output
	}
	if err != nil {
		return classify(err)
	}
	// A _sluice_offsets of an earlier Sluice has no table_id column. Look
	// first: ALTER TABLE needs ownership and an exclusive lock even when
	// the column exists, and other outputs hold row locks on the table
	// for whole deliveries.
	var has bool
	if err := o.conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'table_id' AND NOT attisdropped)", o.offsets).Scan(&has); err != nil {
		return classify(err)
	}
	if !has {
		_, err = o.conn.Exec(ctx, "ALTER TABLE "+o.offsets+" ADD COLUMN IF NOT EXISTS table_id text")
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42701") {
			err = nil // added concurrently by another output
		}
		if err != nil {
			return classify(err)
		}
	}
	if _, err := o.conn.Exec(ctx, "INSERT INTO "+o.offsets+" VALUES ($1, $2, $3, -1) ON CONFLICT DO NOTHING", o.p.Pipeline, o.p.Table, o.p.Connector); err != nil {
		return classify(err)
	}
	var held string
	err = o.conn.QueryRow(ctx, "SELECT version, coalesce(table_id, '') FROM "+o.offsets+" WHERE pipeline = $1 AND table_name = $2 AND connector = $3", o.p.Pipeline, o.p.Table, o.p.Connector).Scan(&o.delivered, &held)
	if err != nil {
		return classify(err)
	}
	if o.delivered < 0 {
		held = "" // nothing delivered: any table may start here
	}
	return o.p.CheckTableID(held)
}

// begin opens the commit's transaction and locks this output's position,
// which must still be the one this sink knows.
func (o *Output) begin(ctx context.Context) error {
	if o.tx != nil {
		return nil
	}
	if o.failed != nil {
		return fmt.Errorf("postgres_output %s: an earlier write failed, reopen to resume: %w", o.p.Endpoint, o.failed)
	}
	if o.conn == nil {
		return errors.New("postgres_output: not open")
	}
	tx, err := o.conn.Begin(ctx)
	if err != nil {
		return classify(err)
	}
	var v int64
	err = tx.QueryRow(ctx, "SELECT version FROM "+o.offsets+" WHERE pipeline = $1 AND table_name = $2 AND connector = $3 FOR UPDATE", o.p.Pipeline, o.p.Table, o.p.Connector).Scan(&v)
	if err == nil && v != o.delivered {
		err = fmt.Errorf("%w: delivered version %d, expected %d", ErrFenced, v, o.delivered)
	}
	if err != nil {
		_ = tx.Rollback(ctx)
		return classify(err)
	}
	o.tx, o.seq, o.rows, o.deletes = tx, 0, 0, false
	return nil
}

// Write streams the batch's changes into the open transaction with COPY:
// into the table itself in cdc mode, into the temporary table that Commit
// merges from in materialized mode.
func (o *Output) Write(ctx context.Context, b connectors.ChangeBatch) error {
	rec := b.Record
	if rec == nil || rec.NumRows() == 0 {
		return nil
	}
	fields := o.p.Schema.Fields()
	if int(rec.NumCols()) != len(fields)+1 {
		return connectors.Fatal(fmt.Errorf("postgres_output %s: batch has %d columns, want the table's %d and %s", o.p.Endpoint, rec.NumCols(), len(fields), pipeline.WeightColumn))
	}
	for i, f := range fields {
		if !arrow.TypeEqual(rec.Column(i).DataType(), f.Type) {
			return connectors.Fatal(fmt.Errorf("postgres_output %s: batch column %d is %s, want %s", o.p.Endpoint, i, rec.Column(i).DataType(), f.Type))
		}
	}
	w, ok := rec.Column(len(fields)).(*array.Int64)
	if !ok {
		return connectors.Fatal(fmt.Errorf("postgres_output %s: weight column is %s, want int64", o.p.Endpoint, rec.Column(len(fields)).DataType()))
	}
	if err := o.begin(ctx); err != nil {
		return err
	}
	r := &copyReader{o: o, rec: rec, weights: w, encs: make([]encoder, len(fields))}
	for i := range fields {
		e, err := newEncoder(rec.Column(i), o.cols[i].oid)
		if err != nil {
			return connectors.Fatal(err)
		}
		r.encs[i] = e
	}
	if o.cfg.Mode == ModeCDC {
		ts := b.Time
		if ts.IsZero() {
			ts = time.Now()
		}
		r.ts = tsField(ts, o.tsOID)
	}
	r.buf = append(r.buf, copyHeader...)
	if _, err := o.conn.PgConn().CopyFrom(ctx, r, o.copySQL); err != nil {
		return o.abort(ctx, err)
	}
	o.sent += r.sent
	return nil
}

// copyReader encodes a record batch as a binary COPY stream, as
// pgconn.CopyFrom reads it.
type copyReader struct {
	o       *Output
	rec     arrow.RecordBatch
	weights *array.Int64
	encs    []encoder
	ts      []byte
	row     int
	rep     int64 // copies of the current row still to write (cdc)
	buf     []byte
	off     int
	done    bool
	sent    int64
}

func (r *copyReader) Read(p []byte) (int, error) {
	if len(r.buf)-r.off < len(p) && !r.done {
		r.buf = r.buf[:copy(r.buf, r.buf[r.off:])] // keep the unsent tail only
		r.off = 0
		r.fill(len(p))
	}
	if r.off == len(r.buf) {
		return 0, io.EOF
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	r.sent += int64(n)
	return n, nil
}

// fill encodes rows until the buffer holds at least want bytes or the
// batch ends.
func (r *copyReader) fill(want int) {
	o, n := r.o, int(r.rec.NumRows())
	cdc := o.cfg.Mode == ModeCDC
	ncols := uint16(len(r.encs) + 2)
	for len(r.buf)-r.off < want {
		if r.row >= n {
			r.buf = append(r.buf, 0xff, 0xff) // trailer
			r.done = true
			return
		}
		w := r.weights.Value(r.row)
		if w == 0 {
			r.row++
			continue
		}
		if w < 0 {
			o.deletes = true
		}
		if cdc {
			if r.rep == 0 {
				r.rep = w
				if w < 0 {
					r.rep = -w
				}
			}
			r.buf = binary.BigEndian.AppendUint16(r.buf, ncols)
			for _, e := range r.encs {
				r.buf = e(r.buf, r.row)
			}
			op := byte('i')
			if w < 0 {
				op = 'd'
			}
			r.buf = append(r.buf, opField(op)...)
			r.buf = append(r.buf, r.ts...)
			o.rows++
			if r.rep--; r.rep == 0 {
				r.row++
			}
			continue
		}
		r.buf = binary.BigEndian.AppendUint16(r.buf, ncols)
		for _, e := range r.encs {
			r.buf = e(r.buf, r.row)
		}
		o.seq++
		r.buf = binary.BigEndian.AppendUint64(append(r.buf, 0, 0, 0, 8), uint64(w))
		r.buf = binary.BigEndian.AppendUint64(append(r.buf, 0, 0, 0, 8), uint64(o.seq))
		o.rows++
		r.row++
	}
}

// Commit merges the written changes (materialized mode), sets the
// delivered version and commits the transaction.
func (o *Output) Commit(ctx context.Context, version int64) error {
	if version <= o.delivered {
		return connectors.Fatal(fmt.Errorf("postgres_output %s: commit of version %d, but version %d is already delivered", o.p.Endpoint, version, o.delivered))
	}
	if err := o.begin(ctx); err != nil {
		return err
	}
	if o.cfg.Mode == ModeMaterialized && o.rows > 0 {
		if _, err := o.tx.Exec(ctx, o.mergeSQL()); err != nil {
			return o.abort(ctx, err)
		}
	}
	if _, err := o.tx.Exec(ctx, "UPDATE "+o.offsets+" SET version = $4, table_id = $5 WHERE pipeline = $1 AND table_name = $2 AND connector = $3", o.p.Pipeline, o.p.Table, o.p.Connector, version, o.p.TableID); err != nil {
		return o.abort(ctx, err)
	}
	if err := o.tx.Commit(ctx); err != nil {
		// The outcome is unknown if the connection broke: a new Open
		// reads the position that holds.
		o.tx = nil
		o.conn.Close(context.Background())
		o.conn = nil
		return fmt.Errorf("commit postgres_output %s: %w", o.p.Endpoint, classify(err))
	}
	o.tx = nil
	o.delivered = version
	return nil
}

// mergeSQL is the statement that applies the temporary table's changes to
// the table: per full row, the net weight (DBSP's); per key, the newest row
// with a positive net weight is upserted, and a key with only negative net
// weights is deleted.
func (o *Output) mergeSQL() string {
	var all, keys, set, on []string
	for _, c := range o.cols {
		all = append(all, c.name)
	}
	isKey := map[int]bool{}
	for _, i := range o.pk {
		isKey[i] = true
		keys = append(keys, o.cols[i].name)
		on = append(on, "d."+o.cols[i].name+" = x."+o.cols[i].name)
	}
	for i, c := range o.cols {
		if !isKey[i] {
			set = append(set, c.name+" = EXCLUDED."+c.name)
		}
	}
	cols, ks := strings.Join(all, ", "), strings.Join(keys, ", ")
	conflict := "DO NOTHING"
	if len(set) > 0 {
		conflict = "DO UPDATE SET " + strings.Join(set, ", ")
	}
	if !o.deletes {
		// Only insertions: the newest row of each key.
		return "INSERT INTO " + o.table + " (" + cols + ") SELECT DISTINCT ON (" + ks + ") " + cols +
			" FROM " + tempTable + " ORDER BY " + ks + ", _sluice_seq DESC ON CONFLICT (" + ks + ") " + conflict
	}
	return "WITH net AS (SELECT " + cols + ", sum(_sluice_w) AS w, max(_sluice_seq) AS s FROM " + tempTable + " GROUP BY " + cols + "), " +
		"del AS (DELETE FROM " + o.table + " d USING (SELECT " + ks + " FROM net WHERE w < 0 EXCEPT SELECT " + ks + " FROM net WHERE w > 0) x WHERE " + strings.Join(on, " AND ") + ") " +
		"INSERT INTO " + o.table + " (" + cols + ") SELECT DISTINCT ON (" + ks + ") " + cols + " FROM net WHERE w > 0 ORDER BY " + ks + ", s DESC ON CONFLICT (" + ks + ") " + conflict
}

// abort rolls the open transaction back after err.
func (o *Output) abort(ctx context.Context, err error) error {
	if o.tx != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_ = o.tx.Rollback(rctx)
		cancel()
		o.tx = nil
	}
	o.failed = classify(err)
	return fmt.Errorf("postgres_output %s: %w", o.p.Endpoint, o.failed)
}

// Close rolls back an open transaction and closes the connection. It is
// safe after a failed Open.
func (o *Output) Close() error {
	if o.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if o.tx != nil {
		_ = o.tx.Rollback(ctx)
		o.tx = nil
	}
	err := o.conn.Close(ctx)
	o.conn = nil
	return err
}

// classify marks errors that retrying cannot fix as Fatal: refused
// credentials, a missing database, missing privileges, bad SQL or data.
// Connection errors, serialization failures and server shutdowns stay
// retryable.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "28", // invalid authorization: bad password, unknown role, pg_hba
			"3D", // invalid catalog name: no such database
			"42", // syntax error or access rule violation: privileges, missing objects, types
			"22", // data exception: a value the column cannot hold
			"23", // integrity constraint violation
			"0A": // feature not supported
			return connectors.Fatal(err)
		}
	}
	return err
}
