package delta

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// WriteCommit writes version v's commit put-if-absent: [ErrExist] means
// another writer committed v first, and the caller should read it (and
// the versions after it) and retry at the next version (PROTOCOL.md,
// "Delta Log Entries": "the protocol requires mutual exclusion").
func WriteCommit(ctx context.Context, st Storage, v int64, actions []Action) error {
	var buf bytes.Buffer
	for _, a := range actions {
		b, err := json.Marshal(a)
		if err != nil {
			return err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return st.PutIfAbsent(ctx, CommitFile(v), buf.Bytes())
}

// WriterProperties are the Parquet settings of the data files and
// checkpoints Sluice writes: Snappy, dictionary encoding, row groups of
// at most 1Mi rows.
func WriterProperties() *parquet.WriterProperties {
	return parquet.NewWriterProperties(
		parquet.WithCompression(compress.Codecs.Snappy),
		parquet.WithDictionaryDefault(true),
		parquet.WithMaxRowGroupLength(1<<20),
	)
}

// WriteParquet writes recs (all of schema) as the data file name and
// returns its add action: size, modification time and stats (numRecords,
// and per column minValues, maxValues and nullCount, PROTOCOL.md
// "Per-file Statistics"), with dataChange as given. TIME columns are
// stored as int64 ([StorageType]).
func WriteParquet(ctx context.Context, st Storage, name string, alloc memory.Allocator, schema *arrow.Schema, recs []arrow.RecordBatch, dataChange bool) (*File, int64, error) {
	e, err := NewEncoder(ctx, st, name, alloc, schema)
	if err != nil {
		return nil, 0, err
	}
	for _, rec := range recs {
		if err := e.Write(rec); err != nil {
			e.Abort()
			return nil, 0, err
		}
	}
	return e.Finish(dataChange)
}

// Encoder writes one Parquet data file from record batches written one
// at a time, streamed to storage, so that a caller writing many batches
// (compaction) holds neither every batch nor the whole file.
type Encoder struct {
	name   string
	stored *arrow.Schema
	out    FileWriter
	size   countingWriter
	w      *pqarrow.FileWriter
	stats  *stats
}

type countingWriter struct {
	w FileWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// NewEncoder starts the data file name of schema in st.
func NewEncoder(ctx context.Context, st Storage, name string, alloc memory.Allocator, schema *arrow.Schema) (*Encoder, error) {
	out, err := st.Create(ctx, name)
	if err != nil {
		return nil, err
	}
	e := &Encoder{name: name, stored: storageSchema(schema), out: out}
	e.size.w = out
	w, err := pqarrow.NewFileWriter(e.stored, &e.size, WriterProperties(),
		pqarrow.NewArrowWriterProperties(pqarrow.WithAllocator(alloc), pqarrow.WithStoreSchema()))
	if err != nil {
		out.Abort()
		return nil, err
	}
	e.w, e.stats = w, newStats(e.stored)
	return e, nil
}

// Write adds rec's rows; the caller keeps ownership of rec.
func (e *Encoder) Write(rec arrow.RecordBatch) error {
	if rec == nil || rec.NumRows() == 0 {
		return nil
	}
	rec = toStorage(e.stored, rec)
	defer rec.Release()
	e.stats.add(rec)
	return e.w.WriteBuffered(rec)
}

// Abort drops the file.
func (e *Encoder) Abort() {
	e.w.Close()
	e.out.Abort()
}

// Finish closes the file, makes it durable and returns its add action and
// its rows.
func (e *Encoder) Finish(dataChange bool) (*File, int64, error) {
	if err := e.w.Close(); err != nil {
		e.out.Abort()
		return nil, 0, err
	}
	if err := e.out.Close(); err != nil {
		return nil, 0, err
	}
	return &File{Path: e.name, PartitionValues: PartitionValues{}, Size: e.size.n, ModificationTime: time.Now().UnixMilli(),
		DataChange: &dataChange, Stats: e.stats.json()}, e.stats.rows, nil
}

func storageSchema(s *arrow.Schema) *arrow.Schema {
	fields := s.Fields()
	for i := range fields {
		fields[i].Type = StorageType(fields[i].Type)
	}
	return arrow.NewSchema(fields, nil)
}

// toStorage returns rec with TIME columns reinterpreted as int64 (the
// same buffers); the caller releases the result.
func toStorage(stored *arrow.Schema, rec arrow.RecordBatch) arrow.RecordBatch {
	cols := make([]arrow.Array, rec.NumCols())
	for i, c := range rec.Columns() {
		if c.DataType().ID() == arrow.TIME64 {
			cols[i] = array.MakeFromData(array.NewData(arrow.PrimitiveTypes.Int64, c.Len(), c.Data().Buffers(), nil, c.NullN(), c.Data().Offset()))
			defer cols[i].Release()
		} else {
			cols[i] = c
		}
	}
	return array.NewRecordBatch(stored, cols, rec.NumRows())
}

// stats accumulates a file's per-column statistics.
type stats struct {
	schema   *arrow.Schema
	rows     int64
	min, max []any
	nulls    []int64
}

func newStats(s *arrow.Schema) *stats {
	n := s.NumFields()
	return &stats{schema: s, min: make([]any, n), max: make([]any, n), nulls: make([]int64, n)}
}

// maxStatString is the longest string kept as a max value; a prefix is a
// valid min, but a truncated max would not bound the column.
const maxStatString = 32

func (s *stats) add(rec arrow.RecordBatch) {
	s.rows += rec.NumRows()
	for i, c := range rec.Columns() {
		s.nulls[i] += int64(c.NullN())
		switch a := c.(type) {
		case *array.Int8:
			minMax(s, i, a.Len(), a.IsNull, func(j int) int64 { return int64(a.Value(j)) })
		case *array.Int16:
			minMax(s, i, a.Len(), a.IsNull, func(j int) int64 { return int64(a.Value(j)) })
		case *array.Int32:
			minMax(s, i, a.Len(), a.IsNull, func(j int) int64 { return int64(a.Value(j)) })
		case *array.Int64:
			minMax(s, i, a.Len(), a.IsNull, a.Value)
		case *array.Float32:
			minMax(s, i, a.Len(), func(j int) bool { return a.IsNull(j) || a.Value(j) != a.Value(j) }, func(j int) float64 { return float64(a.Value(j)) })
		case *array.Float64:
			minMax(s, i, a.Len(), func(j int) bool { return a.IsNull(j) || a.Value(j) != a.Value(j) }, a.Value)
		case *array.Date32:
			minMax(s, i, a.Len(), a.IsNull, func(j int) int32 { return int32(a.Value(j)) })
		case *array.Timestamp:
			minMax(s, i, a.Len(), a.IsNull, func(j int) int64 { return int64(a.Value(j)) })
		case *array.String:
			minMax(s, i, a.Len(), a.IsNull, a.Value)
		}
	}
}

func minMax[T int64 | int32 | float64 | string](s *stats, i, n int, skip func(int) bool, value func(int) T) {
	for j := 0; j < n; j++ {
		if skip(j) {
			continue
		}
		v := value(j)
		if cur, ok := s.min[i].(T); !ok || v < cur {
			s.min[i] = v
		}
		if cur, ok := s.max[i].(T); !ok || v > cur {
			s.max[i] = v
		}
	}
}

// json renders the statistics as Delta's stats string. Dates are
// yyyy-mm-dd; timestamps are rounded to milliseconds, the min down and
// the max up, so that they still bound the column.
func (s *stats) json() string {
	mins, maxs, nulls := map[string]any{}, map[string]any{}, map[string]any{}
	for i, f := range s.schema.Fields() {
		nulls[f.Name] = s.nulls[i]
		lo, hi := s.min[i], s.max[i]
		if lo == nil {
			continue
		}
		switch t := f.Type.(type) {
		case *arrow.Date32Type:
			lo, hi = arrow.Date32(lo.(int32)).FormattedString(), arrow.Date32(hi.(int32)).FormattedString()
		case *arrow.TimestampType:
			lo, hi = formatTimestamp(t, lo.(int64), false), formatTimestamp(t, hi.(int64), true)
		case *arrow.StringType:
			if l := lo.(string); len(l) > maxStatString {
				lo = strings.ToValidUTF8(l[:maxStatString], "")
			}
			if len(hi.(string)) > maxStatString {
				hi = nil
			}
		}
		mins[f.Name] = lo
		if hi != nil {
			maxs[f.Name] = hi
		}
	}
	b, _ := json.Marshal(map[string]any{"numRecords": s.rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls})
	return string(b)
}

func formatTimestamp(t *arrow.TimestampType, v int64, up bool) string {
	toTime, _ := t.GetToTimeFunc()
	ts := toTime(arrow.Timestamp(v)).UTC()
	ms := ts.Truncate(1e6)
	if up && !ms.Equal(ts) {
		ms = ms.Add(1e6)
	}
	if t.TimeZone == "" {
		return ms.Format("2006-01-02T15:04:05.000")
	}
	return ms.Format("2006-01-02T15:04:05.000Z07:00")
}

// checkpointSchema is the Parquet checkpoint's schema: one struct column
// per action type (PROTOCOL.md, "Checkpoint Schema").
var checkpointSchema = func() *arrow.Schema {
	str, long, boolean := arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int64, arrow.FixedWidthTypes.Boolean
	strMap := arrow.MapOf(str, str)
	f := func(name string, t arrow.DataType) arrow.Field {
		return arrow.Field{Name: name, Type: t, Nullable: true}
	}
	return arrow.NewSchema([]arrow.Field{
		f("txn", arrow.StructOf(f("appId", str), f("version", long), f("lastUpdated", long))),
		f("add", arrow.StructOf(f("path", str), f("partitionValues", strMap), f("size", long), f("modificationTime", long),
			f("dataChange", boolean), f("stats", str), f("tags", strMap))),
		f("remove", arrow.StructOf(f("path", str), f("deletionTimestamp", long), f("dataChange", boolean),
			f("extendedFileMetadata", boolean), f("partitionValues", strMap), f("size", long))),
		f("metaData", arrow.StructOf(f("id", str), f("name", str), f("description", str),
			f("format", arrow.StructOf(f("provider", str), f("options", strMap))),
			f("schemaString", str), f("partitionColumns", arrow.ListOf(str)), f("configuration", strMap), f("createdTime", long))),
		f("protocol", arrow.StructOf(f("minReaderVersion", arrow.PrimitiveTypes.Int32), f("minWriterVersion", arrow.PrimitiveTypes.Int32),
			f("readerFeatures", arrow.ListOf(str)), f("writerFeatures", arrow.ListOf(str)))),
		f("domainMetadata", arrow.StructOf(f("domain", str), f("configuration", str), f("removed", boolean))),
	}, nil)
}()

// kv renders a string map as Arrow's JSON for a map: [{"key", "value"}].
func kv[V string | *string](m map[string]V) []map[string]any {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]map[string]any, 0, len(m))
	for _, k := range keys {
		out = append(out, map[string]any{"key": k, "value": m[k]})
	}
	return out
}

// checkpointRows renders the snapshot's state as checkpoint rows, in
// Arrow's JSON shape: protocol, metaData, txns, domains, adds, removes.
func (s *Snapshot) checkpointRows() []map[string]any {
	no := false
	var rows []map[string]any
	p := s.Protocol
	rows = append(rows, map[string]any{"protocol": map[string]any{"minReaderVersion": p.MinReaderVersion, "minWriterVersion": p.MinWriterVersion,
		"readerFeatures": p.ReaderFeatures, "writerFeatures": p.WriterFeatures}})
	m := s.Metadata
	rows = append(rows, map[string]any{"metaData": map[string]any{"id": m.ID, "name": m.Name,
		"format": map[string]any{"provider": m.Format.Provider, "options": kv(m.Format.Options)}, "schemaString": m.SchemaString,
		"partitionColumns": m.PartitionColumns, "configuration": kv(m.Configuration), "createdTime": m.CreatedTime}})
	for _, app := range sortedKeys(s.Txns) {
		rows = append(rows, map[string]any{"txn": map[string]any{"appId": app, "version": s.Txns[app]}})
	}
	for _, d := range sortedKeys(s.Domains) {
		rows = append(rows, map[string]any{"domainMetadata": map[string]any{"domain": d, "configuration": s.Domains[d], "removed": no}})
	}
	for _, path := range sortedKeys(s.Files) {
		a := s.Files[path]
		rows = append(rows, map[string]any{"add": map[string]any{"path": a.Path, "partitionValues": kv(a.PartitionValues), "size": a.Size,
			"modificationTime": a.ModificationTime, "dataChange": no, "stats": a.Stats}})
	}
	for _, path := range sortedKeys(s.Tombstones) {
		r := s.Tombstones[path]
		rows = append(rows, map[string]any{"remove": map[string]any{"path": r.Path, "deletionTimestamp": r.DeletionTimestamp, "dataChange": no,
			"extendedFileMetadata": r.ExtendedFileMetadata, "partitionValues": kv(r.PartitionValues), "size": r.Size}})
	}
	return rows
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// WriteCheckpoint writes the snapshot as a single-part Parquet checkpoint
// of its version and points _delta_log/_last_checkpoint at it
// (PROTOCOL.md, "Checkpoints"). Writers that checkpoint the same version
// write the same actions, so either file may win.
//
// It does not write deletion vectors: a snapshot with a file that has
// one is refused, rather than checkpointed with its deleted rows back.
func WriteCheckpoint(ctx context.Context, st Storage, s *Snapshot) error {
	for _, f := range s.Files {
		if f.DV() != nil {
			return fmt.Errorf("checkpoint %d: file %s has a deletion vector, which Sluice does not write into checkpoints", s.Version, f.Path)
		}
	}
	rows := s.checkpointRows()
	var js bytes.Buffer
	for _, r := range rows {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		js.Write(b)
		js.WriteByte('\n')
	}
	jr := array.NewJSONReader(&js, checkpointSchema, array.WithChunk(-1))
	defer jr.Release()
	if !jr.Next() {
		return fmt.Errorf("checkpoint %d: %v", s.Version, jr.Err())
	}
	rec := jr.RecordBatch()
	var buf bytes.Buffer
	w, err := pqarrow.NewFileWriter(checkpointSchema, &buf, WriterProperties(), pqarrow.DefaultWriterProps())
	if err != nil {
		return err
	}
	if err := w.Write(rec); err != nil {
		w.Close()
		return fmt.Errorf("checkpoint %d: %w", s.Version, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("checkpoint %d: %w", s.Version, err)
	}
	if err := st.Put(ctx, checkpointFile(s.Version), buf.Bytes()); err != nil {
		return err
	}
	hint, _ := json.Marshal(lastCheckpointHint{Version: s.Version, Size: int64(len(rows))})
	return st.Put(ctx, lastCheckpointFile, hint)
}
