package delta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/RoaringBitmap/roaring/v2/roaring64"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/scalar"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/format"
	"github.com/sluicehq/sluice/connectors/predicate"
	dlog "github.com/sluicehq/sluice/delta"
	"github.com/sluicehq/sluice/pipeline"
)

// PollInterval is how often follow mode looks for the next commit.
var PollInterval = time.Second

// Phases of a [Checkpoint].
const (
	PhaseSnapshot = "snapshot"
	PhaseFollow   = "follow"
)

// Checkpoint is delta_table_input's position. In the snapshot phase,
// Version is the snapshot's table version and File indexes its data files
// in read order (by path, or by timestamp_column); in the follow phase,
// Version is the commit being ingested and File indexes its data-changing
// add and remove actions in log order (a remove and an add of one path,
// which change its deletion vector, count as one change followed by a
// second for rows the new vector restores). Row is the position in the
// Parquet file of the next row to read, counting rows a deletion vector
// deletes, so that a resume neither skips nor repeats rows.
type Checkpoint struct {
	Phase   string `json:"phase"`
	Version int64  `json:"version"`
	File    int    `json:"file"`
	Row     int64  `json:"row"`
}

// change is a data file whose rows enter the table with weight.
// Without update, the rows read are all but those deleted (the file's
// deletion vector); with update, only the rows in keep that are not in
// deleted (for a deletion vector replaced in a commit: the rows the new
// vector deletes and the old one did not, or the reverse).
type change struct {
	file    *dlog.File
	weight  int64
	deleted *dlog.DeletionVector
	update  bool
	keep    *dlog.DeletionVector
}

// Source reads a Delta table.
type Source struct {
	cfg        Config
	p          connectors.Params
	filter     *predicate.Predicate
	snapFilter *predicate.Predicate

	st    dlog.Storage
	cp    Checkpoint
	state *dlog.Snapshot // the table as of the snapshot, or before the followed commit
	cols  *dlog.Columns
	// files are what the current phase reads: the snapshot's files, or
	// the followed commit's changes; loaded is the version they are of.
	files  []change
	loaded int64
	cur    *fileReader
}

// New validates the config without I/O.
func New(p connectors.Params) (connectors.Source, error) {
	var cfg Config
	if err := connectors.DecodeConfig("transport", p.Config, &cfg); err != nil {
		return nil, err
	}
	if p.Format != nil {
		return nil, &connectors.FieldError{Section: "format", Field: "name", Err: errors.New("delta_table_input reads typed columns and takes no format")}
	}
	if err := cfg.Validate(p.Schema); err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, p: p, loaded: -1}
	if cfg.Filter != "" { // Validate parsed both already
		s.filter, _ = predicate.Parse(cfg.Filter, p.Schema)
	}
	if cfg.SnapshotFilter != "" {
		s.snapFilter, _ = predicate.Parse(cfg.SnapshotFilter, p.Schema)
	}
	return s, nil
}

// Bounded reports whether the connector reaches end of input: in snapshot
// mode, or when end_version is set.
func (s *Source) Bounded() bool { return s.cfg.Mode == ModeSnapshot || s.cfg.EndVersion != nil }

func (s *Source) open(ctx context.Context) error {
	if s.st != nil {
		return nil
	}
	st, err := dlog.OpenStorage(ctx, s.cfg.URI, s.cfg.Settings)
	if err != nil {
		return err
	}
	s.st = st
	return nil
}

// latest returns the table's newest version.
func (s *Source) latest(ctx context.Context) (int64, error) {
	return dlog.Latest(ctx, s.st)
}

// Resolve fixes the start at the connector's first activation: the
// snapshot's version (version, datetime, or the newest), or the first
// version to follow.
func (s *Source) Resolve(ctx context.Context) (connectors.Checkpoint, error) {
	if err := s.open(ctx); err != nil {
		return nil, err
	}
	var v int64
	var err error
	switch {
	case s.cfg.StartVersion != nil:
		v = *s.cfg.StartVersion - 1
	case s.cfg.Version != nil:
		v = *s.cfg.Version
	case s.cfg.Datetime != "":
		t, _ := connectors.ParseDatetime(s.cfg.Datetime)
		v, err = dlog.VersionAt(ctx, s.st, t)
	default:
		v, err = s.latest(ctx)
	}
	if err != nil {
		return nil, err
	}
	cp := Checkpoint{Phase: PhaseSnapshot, Version: v}
	if s.cfg.Mode == ModeFollow {
		cp = Checkpoint{Phase: PhaseFollow, Version: v + 1}
	}
	return json.Marshal(cp)
}

// Open reads the log up to the checkpoint's version. A missing table, a
// missing version and a protocol that needs unsupported reader features
// are fatal. Deletion vectors are read when their data file is opened.
func (s *Source) Open(ctx context.Context, checkpoint connectors.Checkpoint) error {
	if err := s.open(ctx); err != nil {
		return err
	}
	if len(checkpoint) == 0 {
		var err error
		if checkpoint, err = s.Resolve(ctx); err != nil {
			return err
		}
	}
	if err := json.Unmarshal(checkpoint, &s.cp); err != nil {
		return connectors.Fatal(fmt.Errorf("delta_table_input checkpoint %s: %w", checkpoint, err))
	}
	switch s.cp.Phase {
	case PhaseSnapshot:
		snap, err := dlog.LoadSnapshot(ctx, s.st, s.cp.Version)
		if err != nil {
			return err
		}
		if err := s.setState(snap); err != nil {
			return err
		}
		s.files = s.snapshotFiles()
		s.loaded = s.cp.Version
	case PhaseFollow:
		if s.cp.Version > 0 {
			snap, err := dlog.LoadSnapshot(ctx, s.st, s.cp.Version-1)
			if err != nil {
				return err
			}
			if err := s.setState(snap); err != nil {
				return err
			}
		} else {
			s.state = dlog.NewSnapshot()
		}
	default:
		return connectors.Fatal(fmt.Errorf("delta_table_input checkpoint %s: unknown phase", checkpoint))
	}
	return nil
}

// setState makes snap the table state and reads its columns.
func (s *Source) setState(snap *dlog.Snapshot) error {
	cols, err := dlog.ParseColumns(snap.Metadata)
	if err != nil {
		return connectors.Fatal(fmt.Errorf("%s: %w", s.st, err))
	}
	s.state, s.cols = snap, cols
	return nil
}

// snapshotFiles orders the snapshot's files: by path, or by their
// smallest timestamp_column value.
func (s *Source) snapshotFiles() []change {
	out := make([]change, 0, len(s.state.Files))
	for _, f := range s.state.Files {
		out = append(out, change{file: f, weight: 1, deleted: f.DV()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].file.Path < out[j].file.Path })
	if s.cfg.TimestampColumn != "" {
		keys := make(map[*dlog.File]any, len(out))
		for _, c := range out {
			keys[c.file] = s.minValue(c.file)
		}
		sort.SliceStable(out, func(i, j int) bool { return lessValue(keys[out[i].file], keys[out[j].file]) })
	}
	return out
}

// minValue is a file's smallest timestamp_column value: its partition
// value or its stats' minValues; nil when unknown.
func (s *Source) minValue(f *dlog.File) any {
	phys := s.cols.PhysicalName(s.cfg.TimestampColumn)
	if v, ok := f.PartitionValues[phys]; ok && v != nil {
		if n, err := strconv.ParseFloat(*v, 64); err == nil {
			return n
		}
		return *v
	}
	var stats struct {
		MinValues map[string]any `json:"minValues"`
	}
	if f.Stats != "" && json.Unmarshal([]byte(f.Stats), &stats) == nil {
		return stats.MinValues[phys]
	}
	return nil
}

// lessValue orders unknown (nil) first, numbers numerically, the rest as
// text (ISO 8601 timestamps sort as text).
func lessValue(a, b any) bool {
	switch {
	case a == nil:
		return b != nil
	case b == nil:
		return false
	}
	af, aok := a.(float64)
	bf, bok := b.(float64)
	if aok && bok {
		return af < bf
	}
	return fmt.Sprint(a) < fmt.Sprint(b)
}

// loadCommit reads the commit to follow and lists its data changes.
// It reports false when the commit does not exist yet.
func (s *Source) loadCommit(ctx context.Context) (bool, error) {
	actions, err := dlog.ReadCommit(ctx, s.st, s.cp.Version)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// A remove and an add of the same path that both change data replace
	// the file's deletion vector (PROTOCOL.md, "Deletion Vectors"): its
	// other rows stay, so only the difference is read. Paths pair by
	// their decoded form, as Snapshot.Apply keys files, and a remove
	// without a descriptor stands for the active file with its current
	// vector (Snapshot.Apply), so the old vector is taken from there.
	addOf, removeOf := map[string]*dlog.File{}, map[string]*dlog.File{}
	pathOf := map[*dlog.File]string{}
	for _, a := range actions {
		for _, f := range []*dlog.File{a.Add, a.Remove} {
			if f == nil || !f.DataChanged() {
				continue
			}
			p, err := f.FilePath()
			if err != nil {
				return false, connectors.Fatal(fmt.Errorf("%s version %d: %w", s.st, s.cp.Version, err))
			}
			pathOf[f] = p
		}
		if a.Add != nil && a.Add.DataChanged() && addOf[pathOf[a.Add]] == nil {
			addOf[pathOf[a.Add]] = a.Add
		}
		if a.Remove != nil && a.Remove.DataChanged() && removeOf[pathOf[a.Remove]] == nil {
			removeOf[pathOf[a.Remove]] = a.Remove
		}
	}
	paired := map[string]bool{}
	var changes []change
	for _, a := range actions {
		var path string
		if a.Add != nil && a.Add.DataChanged() {
			path = pathOf[a.Add]
		} else if a.Remove != nil && a.Remove.DataChanged() {
			path = pathOf[a.Remove]
		}
		if path != "" && addOf[path] != nil && removeOf[path] != nil {
			if !paired[path] {
				paired[path] = true
				add, old := addOf[path], removeOf[path].DV()
				if active := s.state.Files[path]; old == nil && active != nil {
					old = active.DV() // a remove without the descriptor means the active file
				}
				changes = append(changes,
					change{file: add, weight: -1, update: true, keep: add.DV(), deleted: old},
					change{file: add, weight: 1, update: true, keep: old, deleted: add.DV()})
			}
			continue
		}
		switch {
		case a.Protocol != nil:
			if err := a.Protocol.Check(); err != nil {
				return false, connectors.Fatal(fmt.Errorf("%s version %d: %w", s.st, s.cp.Version, err))
			}
		case a.MetaData != nil:
			cols, err := dlog.ParseColumns(a.MetaData)
			if err != nil {
				return false, connectors.Fatal(fmt.Errorf("%s version %d: %w", s.st, s.cp.Version, err))
			}
			s.cols = cols
		case a.Add != nil && a.Add.DataChanged():
			changes = append(changes, change{file: a.Add, weight: 1, deleted: a.Add.DV()})
		case a.Remove != nil && a.Remove.DataChanged():
			rm := *a.Remove
			if p, err := rm.FilePath(); err == nil && s.state.Files[p] != nil {
				if rm.PartitionValues == nil { // not extendedFileMetadata: take them from the add
					rm.PartitionValues = s.state.Files[p].PartitionValues
				}
				if rm.DV() == nil { // a remove without the descriptor means the active file (Snapshot.Apply)
					rm.DeletionVector = s.state.Files[p].DV()
				}
			}
			changes = append(changes, change{file: &rm, weight: -1, deleted: rm.DV()})
		}
	}
	if s.cols == nil {
		return false, connectors.Fatal(fmt.Errorf("%s version %d: no metaData action before the first data file", s.st, s.cp.Version))
	}
	s.files, s.loaded = changes, s.cp.Version
	if err := s.state.Apply(actions); err != nil {
		return false, connectors.Fatal(err)
	}
	return true, nil
}

// Read returns the next batch: rows of the current data file (deletes
// for removed files), or an empty batch whose checkpoint moves to the
// next phase or commit. In follow mode it waits for the next commit;
// after the snapshot (snapshot mode) or end_version it returns
// connectors.ErrEndOfInput.
func (s *Source) Read(ctx context.Context) (connectors.Batch, error) {
	for {
		if s.cur != nil {
			rec, err := s.cur.next(ctx)
			if err == nil {
				s.cp.Row = s.cur.pq.Row()
				cp, _ := json.Marshal(s.cp)
				return connectors.Batch{Record: rec, Checkpoint: cp}, nil
			}
			if !errors.Is(err, io.EOF) {
				return connectors.Batch{}, err
			}
			s.cur.Close()
			s.cur = nil
			s.cp.File++
			s.cp.Row = 0
		}
		if s.cp.Phase == PhaseFollow && s.loaded != s.cp.Version {
			if s.cfg.EndVersion != nil && s.cp.Version > *s.cfg.EndVersion {
				return connectors.Batch{}, connectors.ErrEndOfInput
			}
			ok, err := s.loadCommit(ctx)
			if err != nil {
				return connectors.Batch{}, err
			}
			if !ok {
				select {
				case <-ctx.Done():
					return connectors.Batch{}, ctx.Err()
				case <-time.After(PollInterval):
				}
				continue
			}
		}
		if s.cp.File < len(s.files) {
			c := s.files[s.cp.File]
			filters := []*predicate.Predicate{s.filter}
			if s.cp.Phase == PhaseSnapshot {
				filters = append(filters, s.snapFilter)
			}
			r, err := s.openFile(ctx, c, filters)
			if err != nil {
				return connectors.Batch{}, err
			}
			if r == nil { // no row of the file to read
				s.cp.File++
				s.cp.Row = 0
				continue
			}
			s.cur = r
			continue
		}
		// The snapshot or the followed commit is done: follow the next
		// version, unless this was snapshot mode's snapshot.
		if s.cp.Phase == PhaseSnapshot && s.cfg.Mode == ModeSnapshot {
			return connectors.Batch{}, connectors.ErrEndOfInput
		}
		s.cp = Checkpoint{Phase: PhaseFollow, Version: s.cp.Version + 1}
		cp, _ := json.Marshal(s.cp)
		return connectors.Batch{Checkpoint: cp}, nil
	}
}

// Close closes the open data file.
func (s *Source) Close() error {
	if s.cur != nil {
		err := s.cur.Close()
		s.cur = nil
		return err
	}
	return nil
}

// fileReader reads one data file into the table's change schema.
type fileReader struct {
	p       connectors.Params
	pq      *format.ParquetReader
	dataCol []int // per table column: index in the reader's output, or -1 for a partition column
	consts  []scalar.Scalar
	weight  int64
	// weightCol is the reader's column of the file's _weight (tables
	// Sluice wrote), or -1: rows then weigh 1.
	weightCol int
	filters   []*predicate.Predicate
	change    *arrow.Schema
	// rows chooses the rows read by their position in the file: nil
	// reads all; with only set, rows in it; else rows not in it.
	rows *roaring64.Bitmap
	only bool
	// last is, with only, the position of the last row to read.
	last int64
}

// openFile opens a data file at the checkpoint's row, with its deletion
// vectors read; nil (and no error) when none of its rows are to be read.
func (s *Source) openFile(ctx context.Context, c change, filters []*predicate.Predicate) (*fileReader, error) {
	path, err := c.file.FilePath()
	if err != nil {
		return nil, connectors.Fatal(err)
	}
	deleted, err := dlog.ReadDeletionVector(ctx, s.st, c.deleted)
	if err != nil {
		return nil, fmt.Errorf("version %d, file %s: %w", s.cp.Version, path, err)
	}
	rows, only := deleted, false
	if c.update {
		keep, err := dlog.ReadDeletionVector(ctx, s.st, c.keep)
		if err != nil {
			return nil, fmt.Errorf("version %d, file %s: %w", s.cp.Version, path, err)
		}
		if keep == nil || keep.IsEmpty() {
			return nil, nil
		}
		if deleted != nil {
			keep.AndNot(deleted)
		}
		if keep.IsEmpty() {
			return nil, nil
		}
		rows, only = keep, true
	}
	if rows != nil && rows.IsEmpty() && !only {
		rows = nil
	}
	// Reading only chosen rows starts at the first one not yet read (row
	// groups before it are skipped) and ends after the last.
	start, last := s.cp.Row, int64(-1)
	if only {
		it := rows.Iterator()
		it.AdvanceIfNeeded(uint64(start))
		if !it.HasNext() {
			return nil, nil
		}
		start, last = int64(it.PeekNext()), int64(rows.Maximum())
	}
	f, err := s.st.Open(ctx, path)
	if errors.Is(err, fs.ErrNotExist) {
		what := "data file"
		if c.weight < 0 {
			what = "removed data file (vacuumed? its rows cannot be deleted)"
		}
		return nil, connectors.Fatal(fmt.Errorf("%s version %d: %s %s does not exist", s.st, s.cp.Version, what, path))
	}
	if err != nil {
		return nil, err
	}
	r := &fileReader{p: s.p, weight: c.weight, change: pipeline.WithWeight(s.p.Schema), rows: rows, only: only, last: last}
	for _, fl := range filters {
		if fl != nil {
			r.filters = append(r.filters, fl)
		}
	}
	var dataFields []arrow.Field
	var names []string
	for _, fld := range s.p.Schema.Fields() {
		lower := strings.ToLower(fld.Name)
		if s.cols.Partition[lower] {
			phys := s.cols.PhysicalName(fld.Name)
			v := c.file.PartitionValues[phys]
			var sc scalar.Scalar
			if v == nil {
				if !fld.Nullable {
					f.Close()
					return nil, connectors.Fatal(fmt.Errorf("%s: file %s: partition column %s is NULL, but the table column is NOT NULL", s.st, path, fld.Name))
				}
				sc = scalar.MakeNullScalar(fld.Type)
			} else if sc, err = scalar.NewStringScalar(*v).CastTo(fld.Type); err != nil {
				f.Close()
				return nil, connectors.Fatal(fmt.Errorf("%s: file %s: partition value %s=%q is not %s: %w", s.st, path, fld.Name, *v, fld.Type, err))
			}
			r.dataCol = append(r.dataCol, -1)
			r.consts = append(r.consts, sc)
			continue
		}
		r.dataCol = append(r.dataCol, len(dataFields))
		r.consts = append(r.consts, nil)
		dataFields = append(dataFields, fld)
		names = append(names, s.cols.PhysicalName(fld.Name))
	}
	r.weightCol = -1
	if s.cols.Has(pipeline.WeightColumn) { // a Sluice table: each row carries its weight
		r.weightCol = len(dataFields)
		dataFields = append(dataFields, arrow.Field{Name: pipeline.WeightColumn, Type: arrow.PrimitiveTypes.Int64})
		names = append(names, s.cols.PhysicalName(pipeline.WeightColumn))
	}
	pq, err := format.OpenParquetColumns(ctx, f, arrow.NewSchema(dataFields, nil), names, s.p.Alloc(), s.p.BatchSize, start)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %s: %w", s.st, path, err)
	}
	r.pq = pq
	return r, nil
}

// next returns the next batch of the file in the change schema; io.EOF
// at its end.
func (r *fileReader) next(ctx context.Context) (arrow.RecordBatch, error) {
	if r.only && r.pq.Row() > r.last {
		return nil, io.EOF
	}
	rec, err := r.pq.Next(ctx)
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	n := rec.NumRows()
	alloc := r.p.Alloc()
	cols := make([]arrow.Array, 0, len(r.dataCol)+1)
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	for i, dc := range r.dataCol {
		if dc >= 0 {
			a := rec.Column(dc)
			a.Retain()
			cols = append(cols, a)
			continue
		}
		a, err := scalar.MakeArrayFromScalar(r.consts[i], int(n), alloc)
		if err != nil {
			return nil, connectors.Fatal(err)
		}
		cols = append(cols, a)
	}
	switch {
	case r.weightCol >= 0:
		stored := rec.Column(r.weightCol).(*array.Int64)
		if r.weight == 1 && stored.NullN() == 0 {
			stored.Retain()
			cols = append(cols, stored)
			break
		}
		b := array.NewInt64Builder(alloc)
		b.Reserve(int(n))
		for i := range int(n) {
			w := int64(1)
			if stored.IsValid(i) {
				w = stored.Value(i)
			}
			b.UnsafeAppend(w * r.weight)
		}
		cols = append(cols, b.NewArray())
		b.Release()
	case r.weight == 1:
		w := rec.Column(int(rec.NumCols()) - 1)
		w.Retain()
		cols = append(cols, w)
	default:
		w, _ := scalar.MakeArrayFromScalar(scalar.NewInt64Scalar(r.weight), int(n), alloc)
		cols = append(cols, w)
	}
	out := array.NewRecordBatch(r.change, cols, n)
	ctx = compute.WithAllocator(ctx, alloc)
	if r.rows != nil {
		if out, err = r.selectRows(ctx, out, r.pq.Row()-n); err != nil {
			return nil, err
		}
	}
	for _, f := range r.filters {
		if out, err = f.Apply(ctx, out); err != nil {
			return nil, fmt.Errorf("filter: %w", err)
		}
	}
	return out, nil
}

// selectRows keeps the rows of rec, the file's rows from position start,
// that r.rows chooses; it releases rec.
func (r *fileReader) selectRows(ctx context.Context, rec arrow.RecordBatch, start int64) (arrow.RecordBatch, error) {
	n := int(rec.NumRows())
	b := array.NewBooleanBuilder(r.p.Alloc())
	defer b.Release()
	b.Reserve(n)
	all := true
	for i := range n {
		keep := r.rows.Contains(uint64(start)+uint64(i)) == r.only
		all = all && keep
		b.UnsafeAppend(keep)
	}
	if all {
		return rec, nil
	}
	mask := b.NewArray()
	defer mask.Release()
	defer rec.Release()
	out, err := compute.FilterRecordBatch(ctx, rec, mask, compute.DefaultFilterOptions())
	if err != nil {
		return nil, fmt.Errorf("deletion vector: %w", err)
	}
	return out, nil
}

// Close closes the file.
func (r *fileReader) Close() error { return r.pq.Close() }
