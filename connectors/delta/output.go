package delta

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/s3"
	dlog "github.com/sluicehq/sluice/delta"
)

// Modes of delta_table_output (Feldera's DeltaTableWriteMode).
const (
	// ModeAppend appends to the table at uri, creating it if absent.
	ModeAppend = "append"
	// ModeTruncate removes the table's files at the output's first
	// open, creating the table if absent.
	ModeTruncate = "truncate"
	// ModeErrorIfExists fails when a table that this output did not
	// create exists at uri.
	ModeErrorIfExists = "error_if_exists"
)

// Feldera's change-log columns, appended to the table's columns in every
// row delta_table_output writes.
const (
	// OpColumn is the operation: "i" for an insert (weight +1), "d" for
	// a delete (weight -1).
	OpColumn = "__feldera_op"
	// TsColumn is when the change was committed to the table store, in
	// microseconds since the Unix epoch; changes of one table version
	// share it, and later versions have later (or equal) values.
	TsColumn = "__feldera_ts"
)

// targetFileBytes is the Arrow size of the rows after which a data file
// is closed and the next one started, so that a commit of any size holds
// one file's row group in memory (and, on S3, one file's bytes).
var targetFileBytes int64 = 256 << 20

// OutputConfig is Feldera's delta_table_output config (DeltaTableWriterConfig),
// plus [s3.Settings] for s3:// URIs.
type OutputConfig struct {
	s3.Settings
	// URI is the table root: a local path, file:///path or
	// s3://bucket/prefix.
	URI string `json:"uri"`
	// Mode is append (the default), truncate or error_if_exists.
	Mode string `json:"mode,omitempty"`
	// CheckpointInterval is the table's delta.checkpointInterval when
	// the output creates it (default 10; 0: no log checkpoints). The
	// output writes a log checkpoint every that many versions.
	CheckpointInterval *int `json:"checkpoint_interval,omitempty"`
	// LogRetentionDuration is the table's delta.logRetentionDuration when
	// the output creates it ("interval 30 days"). Sluice does not delete
	// old log entries itself.
	LogRetentionDuration string `json:"log_retention_duration,omitempty"`
	// EnableExpiredLogCleanup is the table's
	// delta.enableExpiredLogCleanup when the output creates it.
	EnableExpiredLogCleanup *bool `json:"enable_expired_log_cleanup,omitempty"`
	// MaxRetries and Threads are accepted for compatibility with Feldera
	// and ignored: the Deliver activity retries, and one goroutine writes.
	MaxRetries *int `json:"max_retries,omitempty"`
	Threads    *int `json:"threads,omitempty"`
}

var intervalUnits = map[string]bool{
	"nanosecond": true, "microsecond": true, "millisecond": true, "second": true,
	"minute": true, "hour": true, "day": true, "week": true,
}

// Validate reports every problem with the config at once, with paths
// relative to the transport config.
func (c *OutputConfig) Validate() error {
	errs := []error{c.Settings.Validate()}
	if c.URI == "" {
		errs = append(errs, connectors.TransportError("uri", "required"))
	} else if u, err := url.Parse(c.URI); err == nil && u.Scheme != "" && u.Scheme != "s3" && u.Scheme != "file" && len(u.Scheme) > 1 {
		errs = append(errs, connectors.TransportError("uri", "want a local path, file:// or s3://, got %q", c.URI))
	}
	switch c.Mode {
	case ModeAppend, ModeTruncate, ModeErrorIfExists:
	default:
		errs = append(errs, connectors.TransportError("mode", "want append, truncate or error_if_exists, got %q", c.Mode))
	}
	if c.CheckpointInterval != nil && *c.CheckpointInterval < 0 {
		errs = append(errs, connectors.TransportError("checkpoint_interval", "must not be negative"))
	}
	if d := c.LogRetentionDuration; d != "" {
		f := strings.Fields(d)
		n, err := strconv.ParseInt(strings.Join(f[min(1, len(f)):min(2, len(f))], ""), 10, 64)
		if len(f) != 3 || f[0] != "interval" || err != nil || n < 0 || !intervalUnits[strings.TrimSuffix(f[2], "s")] {
			errs = append(errs, connectors.TransportError("log_retention_duration", `want "interval <N> <unit>" (unit: nanosecond[s] ... week[s]), got %q`, d))
		}
	}
	if c.Threads != nil && *c.Threads < 1 {
		errs = append(errs, connectors.TransportError("threads", "must be at least 1"))
	}
	return errors.Join(errs...)
}

// Output is the delta_table_output sink: it appends a table's changes to
// a Delta table as Feldera's change log (the table's columns, then
// [OpColumn] and [TsColumn]), one Delta commit per [Output.Commit],
// written with the table store's Delta log code (package delta). The
// delivered position is the version of the commit's txn action, whose
// appId is [OutputAppID]: a commit whose txn is already in the table is
// skipped, so each change is in the table exactly once.
type Output struct {
	cfg    OutputConfig
	p      connectors.SinkParams
	appID  string
	schema *arrow.Schema // the table's columns, OpColumn, TsColumn
	proto  *dlog.Protocol

	st        dlog.Storage
	snap      *dlog.Snapshot // the table as of its newest version this sink has read
	delivered int64          // the txn version this sink's next commit follows
	interval  int            // log checkpoint every interval versions; 0: never

	enc      *dlog.Encoder // the data file being written, or nil
	encBytes int64         // Arrow bytes written to enc
	pending  []*dlog.File  // finished data files of the open commit
	// uncertain says a commit of pending failed with an unknown outcome:
	// its files may be in the table, so Close leaves them.
	uncertain bool

	transmitted int64
}

// OutputAppID is the txn application id of a delta_table_output's
// commits: "sluice-<pipeline>-<table>-<connector>".
func OutputAppID(pipelineName, table, connector string) string {
	return "sluice-" + pipelineName + "-" + table + "-" + connector
}

// NewOutput validates the config without I/O and returns the sink.
func NewOutput(p connectors.SinkParams) (connectors.Sink, error) {
	cfg := OutputConfig{Mode: ModeAppend}
	if err := connectors.DecodeConfig("transport", p.Config, &cfg); err != nil {
		return nil, err
	}
	if p.Format != nil {
		return nil, &connectors.FieldError{Section: "format", Field: "name", Err: errors.New("delta_table_output writes typed columns and takes no format")}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if p.Schema == nil {
		return nil, connectors.Fatal(errors.New("delta_table_output: no table schema"))
	}
	for _, f := range p.Schema.Fields() {
		if strings.EqualFold(f.Name, OpColumn) || strings.EqualFold(f.Name, TsColumn) {
			return nil, connectors.Fatal(fmt.Errorf("delta_table_output: the table's column %s clashes with the change-log column of that name", f.Name))
		}
	}
	fields := append(p.Schema.Fields(),
		arrow.Field{Name: OpColumn, Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: TsColumn, Type: arrow.PrimitiveTypes.Int64, Nullable: true})
	schema := arrow.NewSchema(fields, nil)
	if _, err := dlog.SchemaString(schema); err != nil {
		return nil, connectors.Fatal(fmt.Errorf("delta_table_output: %w", err))
	}
	proto := &dlog.Protocol{MinReaderVersion: 1, MinWriterVersion: 2}
	for _, f := range fields {
		if t, ok := f.Type.(*arrow.TimestampType); ok && t.TimeZone == "" {
			proto = &dlog.Protocol{MinReaderVersion: 3, MinWriterVersion: 7, ReaderFeatures: []string{"timestampNtz"},
				WriterFeatures: []string{"appendOnly", "invariants", "timestampNtz"}}
			break
		}
	}
	return &Output{cfg: cfg, p: p, appID: OutputAppID(p.Pipeline, p.Table, p.Connector), schema: schema, proto: proto, delivered: -1}, nil
}

// Guarantee implements connectors.Guaranteed: exactly once, by the txn.
func (s *Output) Guarantee() connectors.Guarantee { return connectors.ExactlyOnce }

// Transmitted implements connectors.SinkMetrics: the bytes of the data
// files committed, and no encoding errors.
func (s *Output) Transmitted() (bytes int64, encodeErrors int64) { return s.transmitted, 0 }

// Open reads the table's log (creating the table if there is none),
// applies the mode at the output's first open, and returns the version
// of the txn of [OutputAppID], or -1. The first open is the one that
// finds no such txn: creating the table and truncating it both commit
// the txn with version -1, so that a reopen after a crash neither
// truncates again nor takes the table for someone else's.
func (s *Output) Open(ctx context.Context) (int64, error) {
	st, err := dlog.NewStorage(ctx, s.cfg.URI, s.cfg.Settings)
	if err != nil {
		return -1, err
	}
	s.st = st
	for {
		snap, err := dlog.LoadLatest(ctx, st)
		if err != nil {
			return -1, fmt.Errorf("delta_table_output %s: %w", st, err)
		}
		if snap == nil {
			err = s.create(ctx)
		} else if _, ours := snap.Txns[s.appID]; ours || s.cfg.Mode == ModeAppend {
			if err := s.check(snap); err != nil {
				return -1, err
			}
			s.snap = snap
		} else if s.cfg.Mode == ModeErrorIfExists {
			return -1, connectors.Fatal(fmt.Errorf("delta_table_output: mode error_if_exists, and a Delta table exists at %s (version %d)", st, snap.Version))
		} else {
			err = s.truncate(ctx, snap)
		}
		if errors.Is(err, dlog.ErrExist) {
			continue // another writer committed first: read what it did
		}
		if err != nil {
			return -1, err
		}
		break
	}
	s.interval = 10
	if v, ok := s.snap.Metadata.Configuration["delta.checkpointInterval"]; ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			s.interval = n
		}
	}
	s.delivered = -1
	if v, ok := s.snap.Txns[s.appID]; ok {
		s.delivered = v
	}
	if s.delivered >= 0 {
		held, err := s.heldTableID(ctx)
		if err != nil {
			return -1, err
		}
		if err := s.p.CheckTableID(held); err != nil {
			return -1, err
		}
	}
	return s.delivered, nil
}

// TableIDParam is the commitInfo.operationParameters key under which each
// commit of delta_table_output records the id of the table whose version
// its txn is (connectors.SinkParams.TableID). A Delta txn holds only a
// number, so Open finds the table id in the commit that set it.
const TableIDParam = "sluiceTableId"

// positionLookBack bounds how many commits, from the newest, Open reads
// to find the one that set this output's txn; a position set further
// back (other writers committed much since) is not checked.
const positionLookBack = 100

// heldTableID returns the table id recorded by the commit that set this
// output's txn to its current version, or "" when it is not found
// (written by an earlier Sluice, expired from the log, or further back
// than positionLookBack).
func (s *Output) heldTableID(ctx context.Context) (string, error) {
	for v := s.snap.Version; v >= 0 && v > s.snap.Version-positionLookBack; v-- {
		actions, err := dlog.ReadCommit(ctx, s.st, v)
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil // log cleaned up
		}
		if err != nil {
			return "", fmt.Errorf("delta_table_output %s: %w", s.st, err)
		}
		var ours bool
		var id string
		for _, a := range actions {
			if a.Txn != nil && a.Txn.AppID == s.appID && a.Txn.Version == s.delivered {
				ours = true
			}
			if a.CommitInfo != nil {
				id, _ = a.CommitInfo.OperationParams[TableIDParam].(string)
			}
		}
		if ours {
			return id, nil
		}
	}
	return "", nil
}

// metadata is the metaData action of a table this output creates or
// truncates.
func (s *Output) metadata(id string, created int64) *dlog.Metadata {
	ss, _ := dlog.SchemaString(s.schema) // checked by NewOutput
	conf := dlog.StringMap{"delta.checkpointInterval": "10"}
	if s.cfg.CheckpointInterval != nil {
		conf["delta.checkpointInterval"] = strconv.Itoa(*s.cfg.CheckpointInterval)
	}
	if s.cfg.LogRetentionDuration != "" {
		conf["delta.logRetentionDuration"] = s.cfg.LogRetentionDuration
	}
	if s.cfg.EnableExpiredLogCleanup != nil {
		conf["delta.enableExpiredLogCleanup"] = strconv.FormatBool(*s.cfg.EnableExpiredLogCleanup)
	}
	name := s.p.Table
	return &dlog.Metadata{ID: id, Name: name, Format: dlog.Format{Provider: "parquet", Options: dlog.StringMap{}},
		SchemaString: ss, PartitionColumns: []string{}, Configuration: conf, CreatedTime: created}
}

func (s *Output) txn(version int64, now time.Time) dlog.Action {
	return dlog.Action{Txn: &dlog.Txn{AppID: s.appID, Version: version, LastUpdated: now.UnixMilli()}}
}

// create commits version 0: protocol, metaData and the txn at -1.
func (s *Output) create(ctx context.Context) error {
	now := time.Now()
	actions := []dlog.Action{{Protocol: s.proto}, {MetaData: s.metadata(uuid.NewString(), now.UnixMilli())}, s.txn(-1, now),
		{CommitInfo: &dlog.CommitInfo{Timestamp: now.UnixMilli(), Operation: "CREATE TABLE", EngineInfo: engineInfo,
			OperationParams: map[string]any{"mode": "ErrorIfExists", "location": s.cfg.URI}}}}
	if err := dlog.WriteCommit(ctx, s.st, 0, actions); err != nil {
		return fmt.Errorf("delta_table_output: create %s: %w", s.st, err)
	}
	s.snap = dlog.NewSnapshot()
	if err := s.snap.Apply(actions); err != nil {
		return err
	}
	s.snap.Version = 0
	return nil
}

// truncate commits the next version of an existing table: every active
// file removed, this output's metaData (the table's id kept), a protocol
// that covers both, and the txn at -1.
func (s *Output) truncate(ctx context.Context, snap *dlog.Snapshot) error {
	if err := writable(s.st, snap, true); err != nil {
		return err
	}
	now := time.Now()
	yes := true
	var actions []dlog.Action
	if p := mergeProtocol(snap.Protocol, s.proto); p != nil {
		actions = append(actions, dlog.Action{Protocol: p})
	}
	actions = append(actions, dlog.Action{MetaData: s.metadata(snap.Metadata.ID, snap.Metadata.CreatedTime)})
	for _, path := range slices.Sorted(func(yield func(string) bool) {
		for p := range snap.Files {
			if !yield(p) {
				return
			}
		}
	}) {
		f := snap.Files[path]
		actions = append(actions, dlog.Action{Remove: &dlog.File{Path: f.Path, PartitionValues: f.PartitionValues, Size: f.Size,
			DeletionTimestamp: now.UnixMilli(), DataChange: &yes, ExtendedFileMetadata: true}})
	}
	actions = append(actions, s.txn(-1, now), dlog.Action{CommitInfo: &dlog.CommitInfo{Timestamp: now.UnixMilli(), Operation: "WRITE",
		EngineInfo: engineInfo, OperationParams: map[string]any{"mode": "Overwrite", "removedFiles": len(snap.Files)}}})
	v := snap.Version + 1
	if err := dlog.WriteCommit(ctx, s.st, v, actions); err != nil {
		return fmt.Errorf("delta_table_output: truncate %s at version %d: %w", s.st, v, err)
	}
	if err := snap.Apply(actions); err != nil {
		return err
	}
	snap.Version = v
	s.snap = snap
	return nil
}

// engineInfo is commitInfo.engineInfo.
const engineInfo = "Sluice delta_table_output"

// supportedWriterFeatures are the writer table features whose
// obligations an append of Parquet files meets.
var supportedWriterFeatures = map[string]bool{
	"appendOnly": true, "invariants": true, "timestampNtz": true, "domainMetadata": true,
	"vacuumProtocolCheck": true, "checkpointProtection": true,
}

// writable checks that Sluice may write the table: readable, a writer
// protocol whose features an append meets, no partitioning and no column
// mapping (unless truncating replaces the metaData), and removes allowed
// when truncating.
func writable(st dlog.Storage, snap *dlog.Snapshot, truncating bool) error {
	p, md := snap.Protocol, snap.Metadata
	if err := p.Check(); err != nil {
		return connectors.Fatal(fmt.Errorf("delta_table_output %s: %w", st, err))
	}
	switch {
	case p.MinWriterVersion > 7:
		return connectors.Fatal(fmt.Errorf("delta_table_output %s: the table requires Delta writer version %d; Sluice writes versions 1, 2 and 7", st, p.MinWriterVersion))
	case p.MinWriterVersion > 2 && p.MinWriterVersion < 7:
		return connectors.Fatal(fmt.Errorf("delta_table_output %s: the table requires Delta writer version %d (check constraints, generated or identity columns, change data feed, column mapping); Sluice writes versions 1, 2 and 7", st, p.MinWriterVersion))
	case p.MinWriterVersion == 7:
		var missing []string
		for _, f := range p.WriterFeatures {
			if !supportedWriterFeatures[f] {
				missing = append(missing, f)
			}
		}
		if len(missing) > 0 {
			return connectors.Fatal(fmt.Errorf("delta_table_output %s: the table requires writer features that Sluice does not support: %s", st, strings.Join(missing, ", ")))
		}
	}
	if truncating {
		if md.Configuration["delta.appendOnly"] == "true" {
			return connectors.Fatal(fmt.Errorf("delta_table_output %s: mode truncate, but the table is append-only (delta.appendOnly)", st))
		}
		return nil
	}
	if len(md.PartitionColumns) > 0 {
		return connectors.Fatal(fmt.Errorf("delta_table_output %s: the table is partitioned by %s; Sluice writes unpartitioned tables (use mode truncate to replace it)", st, strings.Join(md.PartitionColumns, ", ")))
	}
	if m := md.Configuration["delta.columnMapping.mode"]; m != "" && m != "none" {
		return connectors.Fatal(fmt.Errorf("delta_table_output %s: the table uses column mapping (mode %s), which Sluice does not write", st, m))
	}
	return nil
}

// mergeProtocol returns the protocol a truncated table needs to hold this
// output's columns, or nil if have already covers want.
func mergeProtocol(have, want *dlog.Protocol) *dlog.Protocol {
	if want.MinReaderVersion < 3 || slices.Contains(have.ReaderFeatures, "timestampNtz") {
		return nil
	}
	p := &dlog.Protocol{MinReaderVersion: 3, MinWriterVersion: 7}
	if have.MinReaderVersion == 3 {
		p.ReaderFeatures = slices.Clone(have.ReaderFeatures)
	} else if have.MinReaderVersion == 2 {
		p.ReaderFeatures = []string{"columnMapping"}
	}
	if have.MinWriterVersion == 7 {
		p.WriterFeatures = slices.Clone(have.WriterFeatures)
	} else if have.MinWriterVersion >= 2 {
		p.WriterFeatures = []string{"appendOnly", "invariants"}
	}
	for _, f := range want.ReaderFeatures {
		if !slices.Contains(p.ReaderFeatures, f) {
			p.ReaderFeatures = append(p.ReaderFeatures, f)
		}
	}
	for _, f := range want.WriterFeatures {
		if !slices.Contains(p.WriterFeatures, f) {
			p.WriterFeatures = append(p.WriterFeatures, f)
		}
	}
	return p
}

// check refuses an existing table that Sluice cannot append this
// output's rows to: see [writable], and columns that differ in name,
// order or Delta type from the table's columns plus the change-log
// columns (a nullable column may not go into a NOT NULL one).
func (s *Output) check(snap *dlog.Snapshot) error {
	if err := writable(s.st, snap, false); err != nil {
		return err
	}
	have, err := dlog.ArrowSchema(snap.Metadata)
	if err != nil {
		return connectors.Fatal(fmt.Errorf("delta_table_output %s: %w", s.st, err))
	}
	render := func(sc *arrow.Schema) string {
		var out []string
		for _, f := range sc.Fields() {
			t, _ := dlog.TypeName(f.Type)
			c := f.Name + " " + t
			if !f.Nullable {
				c += " not null"
			}
			out = append(out, c)
		}
		return strings.Join(out, ", ")
	}
	ok := have.NumFields() == s.schema.NumFields()
	for i := 0; ok && i < have.NumFields(); i++ {
		h, w := have.Field(i), s.schema.Field(i)
		ht, _ := dlog.TypeName(h.Type)
		wt, _ := dlog.TypeName(w.Type)
		ok = strings.EqualFold(h.Name, w.Name) && ht == wt && (h.Nullable || !w.Nullable)
	}
	if !ok {
		return connectors.Fatal(fmt.Errorf("delta_table_output: the Delta table %s has the columns (%s), but the output writes (%s)", s.st, render(have), render(s.schema)))
	}
	return nil
}

// Write encodes b's rows into the open commit's data files: each row
// with weight +1 as "i", -1 as "d" (a weight of n > 1 repeats the row n
// times, as Feldera does), and __feldera_ts from b.Time. Files are
// streamed to storage and closed every few hundred MiB of rows.
func (s *Output) Write(ctx context.Context, b connectors.ChangeBatch) error {
	if s.st == nil || s.snap == nil {
		return errors.New("delta_table_output: Write before Open")
	}
	if b.Record == nil || b.Record.NumRows() == 0 {
		return nil
	}
	rec, err := s.changeLog(ctx, b)
	if err != nil {
		return err
	}
	defer rec.Release()
	if rec.NumRows() == 0 {
		return nil
	}
	if s.enc == nil {
		enc, err := dlog.NewEncoder(ctx, s.st, "part-"+uuid.NewString()+".snappy.parquet", s.p.Alloc(), s.schema)
		if err != nil {
			return fmt.Errorf("delta_table_output %s: %w", s.st, err)
		}
		s.enc, s.encBytes = enc, 0
	}
	if err := s.enc.Write(rec); err != nil {
		s.enc.Abort()
		s.enc = nil
		return fmt.Errorf("delta_table_output %s: %w", s.st, err)
	}
	s.encBytes += recordBytes(rec)
	if s.encBytes >= targetFileBytes {
		return s.finishFile()
	}
	return nil
}

// recordBytes is the size of rec's buffers.
func recordBytes(rec arrow.RecordBatch) int64 {
	var n int64
	var add func(d arrow.ArrayData)
	add = func(d arrow.ArrayData) {
		for _, b := range d.Buffers() {
			if b != nil {
				n += int64(b.Len())
			}
		}
		for _, c := range d.Children() {
			add(c)
		}
	}
	for _, c := range rec.Columns() {
		add(c.Data())
	}
	return n
}

// finishFile closes the data file being written and adds it to pending.
func (s *Output) finishFile() error {
	if s.enc == nil {
		return nil
	}
	add, _, err := s.enc.Finish(true)
	s.enc = nil
	if err != nil {
		return fmt.Errorf("delta_table_output %s: %w", s.st, err)
	}
	s.pending = append(s.pending, add)
	return nil
}

// changeLog returns b's rows in the output schema; the caller releases
// it.
func (s *Output) changeLog(ctx context.Context, b connectors.ChangeBatch) (arrow.RecordBatch, error) {
	rec, n := b.Record, s.p.Schema.NumFields()
	if int(rec.NumCols()) != n+1 {
		return nil, connectors.Fatal(fmt.Errorf("delta_table_output: a change batch has %d columns; want the table's %d and the weight", rec.NumCols(), n))
	}
	weights, ok := rec.Column(n).(*array.Int64)
	if !ok {
		return nil, connectors.Fatal(fmt.Errorf("delta_table_output: the weight column is %s; want int64", rec.Column(n).DataType()))
	}
	for i, f := range s.p.Schema.Fields() {
		if !arrow.TypeEqual(f.Type, rec.Column(i).DataType()) {
			return nil, connectors.Fatal(fmt.Errorf("delta_table_output: column %s is %s in a change batch; want %s", f.Name, rec.Column(i).DataType(), f.Type))
		}
	}
	alloc := s.p.Alloc()
	unit := true
	for _, w := range weights.Int64Values() {
		if w != 1 && w != -1 {
			unit = false
			break
		}
	}
	cols := make([]arrow.Array, n+2)
	for i := range n {
		cols[i] = rec.Column(i)
		cols[i].Retain()
	}
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	rows := int(rec.NumRows())
	var ops []bool // true: insert
	if unit {
		ops = make([]bool, rows)
		for i, w := range weights.Int64Values() {
			ops[i] = w > 0
		}
	} else { // repeat each row |weight| times
		ib := array.NewInt64Builder(alloc)
		defer ib.Release()
		for i, w := range weights.Int64Values() {
			for k := int64(0); k < w || k < -w; k++ {
				ib.Append(int64(i))
				ops = append(ops, w > 0)
			}
		}
		idx := ib.NewArray()
		defer idx.Release()
		for i := range n {
			t, err := compute.TakeArray(compute.WithAllocator(ctx, alloc), cols[i], idx)
			if err != nil {
				return nil, fmt.Errorf("delta_table_output: %w", err)
			}
			cols[i].Release()
			cols[i] = t
		}
		rows = len(ops)
	}
	sb := array.NewStringBuilder(alloc)
	defer sb.Release()
	sb.Reserve(rows)
	sb.ReserveData(rows)
	for _, ins := range ops {
		if ins {
			sb.Append("i")
		} else {
			sb.Append("d")
		}
	}
	cols[n] = sb.NewArray()
	tb := array.NewInt64Builder(alloc)
	defer tb.Release()
	if b.Time.IsZero() {
		tb.AppendNulls(rows)
	} else {
		tb.Reserve(rows)
		ts := b.Time.UnixMicro()
		for range rows {
			tb.UnsafeAppend(ts)
		}
	}
	cols[n+1] = tb.NewArray()
	return array.NewRecordBatch(s.schema, cols, int64(rows)), nil
}

// errMoved is a commit refused because another writer of the same appId
// (a stale attempt of the Deliver activity) committed a position this
// sink did not start from; reopening resumes from it.
var errMoved = errors.New("delta_table_output: another writer moved this output's position")

// Commit commits the data files written since the last Commit as the
// table's next version, with the txn {appId, version}. When the table
// already holds the txn at version or later (an earlier attempt
// committed it), the files are dropped and the commit is skipped. A
// commit conflict (another writer took the version) retries at the next
// version. When another writer moved the txn to a position this sink did
// not start from, Commit fails without committing (retryable: reopen).
func (s *Output) Commit(ctx context.Context, version int64) error {
	if s.st == nil || s.snap == nil {
		return errors.New("delta_table_output: Commit before Open")
	}
	if err := s.finishFile(); err != nil {
		return err
	}
	now := time.Now()
	actions := make([]dlog.Action, 0, len(s.pending)+2)
	var size int64
	for _, f := range s.pending {
		actions = append(actions, dlog.Action{Add: f})
		size += f.Size
	}
	blind := true
	actions = append(actions, s.txn(version, now), dlog.Action{CommitInfo: &dlog.CommitInfo{Timestamp: now.UnixMilli(),
		Operation: "STREAMING UPDATE", EngineInfo: engineInfo, IsBlindAppend: &blind,
		OperationParams: map[string]any{"outputMode": "Append", "queryId": s.appID, "epochId": version, TableIDParam: s.p.TableID}}})
	for {
		if _, err := s.snap.CatchUp(ctx, s.st); err != nil {
			return fmt.Errorf("delta_table_output %s: %w", s.st, err)
		}
		cur, ok := s.snap.Txns[s.appID]
		if !ok {
			cur = -1
		}
		if cur >= version { // committed already, by this sink or another attempt
			// The next commit must follow version: if another attempt
			// is past it, that commit is refused below.
			s.dropPending(ctx)
			s.delivered = version
			return nil
		}
		if cur != s.delivered {
			s.dropPending(ctx)
			return fmt.Errorf("%w: %s is at %d in %s, this sink at %d", errMoved, s.appID, cur, s.st, s.delivered)
		}
		v := s.snap.Version + 1
		err := dlog.WriteCommit(ctx, s.st, v, actions)
		if errors.Is(err, dlog.ErrExist) {
			continue // another writer took v: read it, then try the next
		}
		if err != nil {
			// The outcome is unknown (a timeout may hide a success): the
			// files stay, and a retried Commit reads the txn to decide.
			s.uncertain = true
			return fmt.Errorf("delta_table_output: commit %s version %d: %w", s.st, v, err)
		}
		if err := s.snap.Apply(actions); err != nil {
			return err
		}
		s.snap.Version = v
		s.delivered, s.pending, s.uncertain = version, nil, false
		s.transmitted += size
		if s.interval > 0 && v%int64(s.interval) == 0 {
			s.checkpoint(ctx)
		}
		return nil
	}
}

// checkpoint writes the log checkpoint of the snapshot's version, so that
// opening the table reads the commits since it rather than the whole
// log. A failure changes nothing but the next open's cost.
func (s *Output) checkpoint(ctx context.Context) {
	if err := s.snap.LoadTombstones(ctx, s.st); err != nil {
		return
	}
	_ = dlog.WriteCheckpoint(ctx, s.st, s.snap)
}

// dropPending deletes the pending data files that the table does not
// reference.
func (s *Output) dropPending(ctx context.Context) {
	if s.enc != nil {
		s.enc.Abort()
		s.enc = nil
	}
	for _, f := range s.pending {
		if p, err := f.FilePath(); err == nil && (s.snap == nil || s.snap.Files[p] == nil) {
			_ = s.st.Delete(context.WithoutCancel(ctx), p)
		}
	}
	s.pending, s.uncertain = nil, false
}

// Close drops what was written since the last Commit, unless a commit of
// it failed with an unknown outcome (the files may then be in the table;
// at worst they stay as unreferenced files that VACUUM removes). It is
// safe after a failed Open.
func (s *Output) Close() error {
	if s.uncertain {
		s.pending = nil
	}
	if s.st != nil {
		s.dropPending(context.Background())
	}
	return nil
}
