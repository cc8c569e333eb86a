package iceberg

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"
	iceberggo "github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/format"
	"github.com/sluicehq/sluice/pipeline"
)

// Field ids of a position delete file's columns (Iceberg spec, "Position
// Delete Files").
const (
	posFilePathID = 2147483546
	posPosID      = 2147483545
)

// unit is one data file of a snapshot or of a followed change. Its rows
// live under new and not under old enter with weight +1; those live
// under old and not under new leave with weight -1. A nil side is a
// snapshot without the file; a side's live rows are the file's rows
// minus those its delete files remove.
type unit struct {
	path     string
	old, new *table.FileScanTask
}

// plan lists the units of s.cp's snapshot. In the snapshot phase they
// are the snapshot's data files; in the follow phase the data files that
// its commit added or removed, or whose delete files changed, against
// its parent snapshot. Diffing the two snapshots' planned files (Iceberg
// spec, "Scan Planning", which also matches delete files to data files
// by sequence number and partition) rather than trusting manifest entry
// status handles format v1 overwrites, whose new files may be EXISTING.
// A snapshot with operation replace changes no rows and has no units.
func (s *Source) plan(ctx context.Context) error {
	snap := s.tbl.SnapshotByID(s.cp.SnapshotID)
	if snap == nil {
		return connectors.Fatal(fmt.Errorf("iceberg table %s: snapshot %d no longer exists (expired?)", s.tbl.Location(), s.cp.SnapshotID))
	}
	s.dels = newDeleteCache(nil)
	s.units, s.planned = nil, false
	if s.cp.Phase == PhaseFollow && snap.Summary != nil && snap.Summary.Operation == table.OpReplace {
		s.planned = true // Iceberg spec, "Snapshots": replace changes no data
		return nil
	}
	var oldTasks map[string]*table.FileScanTask
	if s.cp.Phase == PhaseFollow && snap.ParentSnapshotID != nil {
		// The parent first: following on, it is the snapshot planned last.
		parent := s.tbl.SnapshotByID(*snap.ParentSnapshotID)
		if parent == nil {
			return connectors.Fatal(fmt.Errorf("iceberg table %s: snapshot %d, parent of %d, no longer exists (expired?)", s.tbl.Location(), *snap.ParentSnapshotID, snap.SnapshotID))
		}
		var err error
		if oldTasks, err = s.tasks(ctx, parent); err != nil {
			return err
		}
	}
	newTasks, err := s.tasks(ctx, snap)
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(newTasks)+len(oldTasks))
	for p := range newTasks {
		paths = append(paths, p)
	}
	for p := range oldTasks {
		if newTasks[p] == nil {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		o, n := oldTasks[p], newTasks[p]
		if o != nil && n != nil && slices.Equal(deletePaths(o), deletePaths(n)) {
			continue // unchanged
		}
		s.units = append(s.units, unit{path: p, old: o, new: n})
	}
	if s.cp.File > len(s.units) {
		return connectors.Fatal(fmt.Errorf("iceberg_input checkpoint: file %d of snapshot %d, which has %d", s.cp.File, s.cp.SnapshotID, len(s.units)))
	}
	s.dels = newDeleteCache(s.units[s.cp.File:])
	s.planned = true
	return nil
}

// tasks plans the scan of snap: its live data files, by path, each with
// the delete files that apply to it, one task per file however many
// byte ranges the planner split it into. Deletion vectors (format v3)
// and files that are not Parquet are refused by name.
func (s *Source) tasks(ctx context.Context, snap *table.Snapshot) (map[string]*table.FileScanTask, error) {
	if c := s.planCache; c.tasks != nil && c.id == snap.SnapshotID {
		return c.tasks, nil
	}
	tasks, err := s.tbl.Scan(table.WithSnapshotID(snap.SnapshotID)).PlanFiles(ctx)
	if err != nil {
		return nil, connectors.Fatal(fmt.Errorf("iceberg table %s: plan snapshot %d: %w", s.tbl.Location(), snap.SnapshotID, err))
	}
	out := make(map[string]*table.FileScanTask, len(tasks))
	for i := range tasks {
		t := &tasks[i]
		if n := len(t.DeletionVectorFiles); n > 0 {
			return nil, connectors.Fatal(fmt.Errorf("iceberg table %s snapshot %d: data file %s has a deletion vector (format v3, %s), which Sluice does not support yet",
				s.tbl.Location(), snap.SnapshotID, t.File.FilePath(), t.DeletionVectorFiles[0].FilePath()))
		}
		if f := t.File.FileFormat(); f != iceberggo.ParquetFile {
			return nil, connectors.Fatal(fmt.Errorf("iceberg table %s: data file %s is %s; Sluice reads Parquet", s.tbl.Location(), t.File.FilePath(), f))
		}
		for _, d := range append(slices.Clip(t.DeleteFiles), t.EqualityDeleteFiles...) {
			if f := d.FileFormat(); f != iceberggo.ParquetFile {
				return nil, connectors.Fatal(fmt.Errorf("iceberg table %s: delete file %s is %s; Sluice reads Parquet", s.tbl.Location(), d.FilePath(), f))
			}
		}
		for _, d := range t.EqualityDeleteFiles {
			if len(d.EqualityFieldIDs()) == 0 {
				return nil, connectors.Fatal(fmt.Errorf("iceberg table %s: equality delete file %s has no equality_ids", s.tbl.Location(), d.FilePath()))
			}
		}
		prev := out[t.File.FilePath()]
		if prev == nil {
			out[t.File.FilePath()] = t
			continue
		}
		// PlanFiles splits a Parquet file larger than
		// read.split.target-size into tasks of byte ranges (its
		// split_offsets), each with the file's delete files. A unit
		// reads the whole file once, with the union of its tasks'
		// delete files.
		merged := *prev
		merged.Start, merged.Length = 0, t.File.FileSizeBytes()
		merged.DeleteFiles = unionFiles(prev.DeleteFiles, t.DeleteFiles)
		merged.EqualityDeleteFiles = unionFiles(prev.EqualityDeleteFiles, t.EqualityDeleteFiles)
		out[t.File.FilePath()] = &merged
	}
	s.planCache.id, s.planCache.tasks = snap.SnapshotID, out
	return out, nil
}

// unionFiles returns the files of a and those of b not in a (by path),
// in a new slice.
func unionFiles(a, b []iceberggo.DataFile) []iceberggo.DataFile {
	out := slices.Clone(a)
	for _, f := range b {
		if !slices.ContainsFunc(out, func(g iceberggo.DataFile) bool { return g.FilePath() == f.FilePath() }) {
			out = append(out, f)
		}
	}
	return out
}

// deletePaths returns the sorted paths of t's delete files.
func deletePaths(t *table.FileScanTask) []string {
	var out []string
	for _, d := range t.DeleteFiles {
		out = append(out, "p:"+d.FilePath())
	}
	for _, d := range t.EqualityDeleteFiles {
		out = append(out, "e:"+d.FilePath())
	}
	sort.Strings(out)
	return out
}

// fieldType returns the Arrow type of Iceberg field id: from the current
// schema, else the newest older schema that has it.
func (s *Source) fieldType(id int) (arrow.DataType, error) {
	f, ok := s.tbl.Schema().FindFieldByID(id)
	if !ok {
		schemas := s.tbl.Metadata().Schemas()
		for i := len(schemas) - 1; i >= 0 && !ok; i-- {
			f, ok = schemas[i].FindFieldByID(id)
		}
	}
	if !ok {
		return nil, connectors.Fatal(fmt.Errorf("iceberg table %s: equality delete field id %d is in none of its schemas", s.tbl.Location(), id))
	}
	t, err := table.TypeToArrowType(f.Type, false, false)
	if err != nil {
		return nil, connectors.Fatal(fmt.Errorf("iceberg table %s: equality delete field %s: %w", s.tbl.Location(), f.Name, err))
	}
	return t, nil
}

// open opens the checkpoint's data file, u, at its row. The file is
// read with the table's columns, then a hidden column for each
// equality-delete field that the table's columns lack.
func (s *Source) open(ctx context.Context, u unit) (*fileReader, error) {
	if !s.dels.want[u.path] {
		// Opened before (the cache dropped its positions): start afresh.
		s.dels = newDeleteCache(s.units[s.cp.File:])
	}
	fields := slices.Clone(s.p.Schema.Fields())
	ids := slices.Clone(s.ids)
	colOf := map[int]int{} // field id → column of the read batch
	for i, id := range s.ids {
		if _, ok := colOf[id]; id > 0 && !ok {
			colOf[id] = i
		}
	}
	for _, t := range []*table.FileScanTask{u.old, u.new} {
		if t == nil {
			continue
		}
		for _, d := range t.EqualityDeleteFiles {
			for _, id := range d.EqualityFieldIDs() {
				if _, ok := colOf[id]; ok {
					continue
				}
				typ, err := s.fieldType(id)
				if err != nil {
					return nil, err
				}
				colOf[id] = len(fields)
				fields = append(fields, arrow.Field{Name: fmt.Sprintf("_sluice_eq_%d", id), Type: typ, Nullable: true})
				ids = append(ids, id)
			}
		}
	}
	r := &fileReader{alloc: s.p.Alloc(), n: s.p.Schema.NumFields(), change: pipeline.WithWeight(s.p.Schema)}
	var err error
	if r.old, err = s.liveness(ctx, u.path, u.old, fields, colOf); err != nil {
		return nil, err
	}
	if r.new, err = s.liveness(ctx, u.path, u.new, fields, colOf); err != nil {
		return nil, err
	}
	f, err := s.fio.Open(u.path)
	if err != nil {
		return nil, connectors.Fatal(fmt.Errorf("iceberg table %s snapshot %d: %w", s.tbl.Location(), s.cp.SnapshotID, err))
	}
	pq, err := format.OpenParquetMatched(ctx, f, arrow.NewSchema(fields, nil), byFieldID(ids), s.p.Alloc(), s.p.BatchSize, s.cp.Row)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", u.path, err)
	}
	r.pq, r.row, r.batch = pq, s.cp.Row, max(s.p.BatchSize, 1)
	r.read = pipeline.WithWeight(arrow.NewSchema(fields, nil))
	s.dels.opened(u)
	return r, nil
}

// byFieldID matches table columns to a data file's columns by the field
// ids ids (Iceberg spec, "Column Projection"). A column without an id
// (none in the table's current schema) reads NULL from a file that has
// field ids: matching it there by name could read a dropped column's
// values. Files without field ids are matched by name.
func byFieldID(ids []int) format.ColumnMatcher {
	match := format.ByFieldID(ids, format.ByName(nil))
	return func(i int, f arrow.Field, fileSchema *arrow.Schema) (int, string) {
		if i >= len(ids) || ids[i] <= 0 {
			for _, ff := range fileSchema.Fields() {
				if id, ok := ff.Metadata.GetValue("PARQUET:field_id"); ok && id != "-1" {
					return -1, f.Name + " (no field id in the table's schema)"
				}
			}
		}
		return match(i, f, fileSchema)
	}
}

// liveness gathers the deletes that apply to data file path under t:
// the positions its position delete files list for path (Iceberg spec,
// "Position Delete Files") and the rows of its equality delete files,
// grouped by their equality_ids (Iceberg spec, "Equality Delete Files").
// A nil t is a snapshot without the file.
func (s *Source) liveness(ctx context.Context, path string, t *table.FileScanTask, fields []arrow.Field, colOf map[int]int) (*liveness, error) {
	if t == nil {
		return nil, nil
	}
	l := &liveness{}
	for _, d := range t.DeleteFiles {
		pos, err := s.positions(ctx, d)
		if err != nil {
			return nil, err
		}
		l.pos = append(l.pos, pos[path]...)
	}
	slices.Sort(l.pos)
	l.pos = slices.Compact(l.pos)
	groups := map[string]*eqGroup{}
	for _, d := range t.EqualityDeleteFiles {
		eids := d.EqualityFieldIDs()
		g := groups[fmt.Sprint(eids)]
		if g == nil {
			g = &eqGroup{}
			for _, id := range eids {
				g.cols = append(g.cols, colOf[id])
			}
			groups[fmt.Sprint(eids)] = g
			l.eq = append(l.eq, g)
		}
		types := make([]arrow.DataType, len(eids))
		for j, c := range g.cols {
			types[j] = fields[c].Type
		}
		keys, err := s.equalityKeys(ctx, d, eids, types)
		if err != nil {
			return nil, err
		}
		g.sets = append(g.sets, keys)
	}
	return l, nil
}

// deleteCache keeps what the delete files read say about the units of
// the snapshot or change being read that are still to be opened: a
// position delete file's positions in their data files, an equality
// delete file's row keys. A unit's liveness copies what applies to it
// when it is opened; the cache then drops the unit's positions, and a
// delete file's entries once no unit still to open uses the file.
type deleteCache struct {
	pos  map[string]map[string][]int64             // delete file → data file → positions
	eq   map[string]map[string]map[string]struct{} // delete file → column types → row keys
	refs map[string]int                            // delete file → units still to open that use it
	want map[string]bool                           // data files of the units still to open
}

// newDeleteCache returns an empty cache for units, the units still to
// open.
func newDeleteCache(units []unit) *deleteCache {
	c := &deleteCache{
		pos:  map[string]map[string][]int64{},
		eq:   map[string]map[string]map[string]struct{}{},
		refs: map[string]int{},
		want: map[string]bool{},
	}
	for _, u := range units {
		c.want[u.path] = true
		for _, d := range unitDeletes(u) {
			c.refs[d]++
		}
	}
	return c
}

// opened drops what only unit u, just opened, needed.
func (c *deleteCache) opened(u unit) {
	if !c.want[u.path] {
		return // counted already
	}
	delete(c.want, u.path)
	for _, d := range unitDeletes(u) {
		delete(c.pos[d], u.path)
		if c.refs[d]--; c.refs[d] <= 0 {
			delete(c.refs, d)
			delete(c.pos, d)
			delete(c.eq, d)
		}
	}
}

// unitDeletes returns the paths of u's delete files (both sides), each
// once.
func unitDeletes(u unit) []string {
	var out []string
	for _, t := range []*table.FileScanTask{u.old, u.new} {
		if t == nil {
			continue
		}
		for _, d := range t.DeleteFiles {
			out = append(out, d.FilePath())
		}
		for _, d := range t.EqualityDeleteFiles {
			out = append(out, d.FilePath())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// positions reads position delete file d: the positions it lists, by
// data file path, for the data files of the units still to open.
func (s *Source) positions(ctx context.Context, d iceberggo.DataFile) (map[string][]int64, error) {
	if m, ok := s.dels.pos[d.FilePath()]; ok {
		return m, nil
	}
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "file_path", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "pos", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	}, nil)
	m := map[string][]int64{}
	err := s.readDeleteFile(ctx, d, sc, []int{posFilePathID, posPosID}, func(rec arrow.RecordBatch) error {
		paths, pos := rec.Column(0).(*array.String), rec.Column(1).(*array.Int64)
		if paths.NullN() > 0 || pos.NullN() > 0 {
			return errors.New("a file_path or pos is null")
		}
		// Writers sort by file_path: collect each run of one path at once.
		for i, n := 0, paths.Len(); i < n; {
			p, j := paths.Value(i), i+1
			for j < n && paths.Value(j) == p {
				j++
			}
			if !s.dels.want[p] {
				i = j
				continue // no unit still to open reads that file
			}
			if _, ok := m[p]; !ok {
				p = strings.Clone(p) // Value aliases the batch's buffer
			}
			m[p] = append(m[p], pos.Int64Values()[i:j]...)
			i = j
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.dels.pos[d.FilePath()] = m
	return m, nil
}

// equalityKeys reads equality delete file d's columns eids, as types,
// into the set of their row keys.
func (s *Source) equalityKeys(ctx context.Context, d iceberggo.DataFile, eids []int, types []arrow.DataType) (map[string]struct{}, error) {
	ck := fmt.Sprint(types)
	if m, ok := s.dels.eq[d.FilePath()][ck]; ok {
		return m, nil
	}
	fields := make([]arrow.Field, len(eids))
	for j, id := range eids {
		fields[j] = arrow.Field{Name: fmt.Sprintf("_sluice_eq_%d", id), Type: types[j], Nullable: true}
	}
	m := map[string]struct{}{}
	var buf []byte
	err := s.readDeleteFile(ctx, d, arrow.NewSchema(fields, nil), eids, func(rec arrow.RecordBatch) error {
		cols := rec.Columns()[:len(eids)]
		for i := range int(rec.NumRows()) {
			buf = appendKey(buf[:0], cols, i)
			m[string(buf)] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.dels.eq[d.FilePath()] == nil {
		s.dels.eq[d.FilePath()] = map[string]map[string]struct{}{}
	}
	s.dels.eq[d.FilePath()][ck] = m
	return m, nil
}

// readDeleteFile reads delete file d's columns with field ids ids as
// schema sc, calling fn with each batch.
func (s *Source) readDeleteFile(ctx context.Context, d iceberggo.DataFile, sc *arrow.Schema, ids []int, fn func(arrow.RecordBatch) error) error {
	f, err := s.fio.Open(d.FilePath())
	if err != nil {
		return connectors.Fatal(fmt.Errorf("iceberg table %s: delete file: %w", s.tbl.Location(), err))
	}
	pq, err := format.OpenParquetMatched(ctx, f, sc, format.ByFieldID(ids, format.ByName(nil)), s.p.Alloc(), 1<<16, 0)
	if err != nil {
		f.Close()
		return fmt.Errorf("delete file %s: %w", d.FilePath(), err)
	}
	defer pq.Close()
	for {
		rec, err := pq.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("delete file %s: %w", d.FilePath(), err)
		}
		err = fn(rec)
		rec.Release()
		if err != nil {
			return connectors.Fatal(fmt.Errorf("delete file %s: %w", d.FilePath(), err))
		}
	}
}

// appendKey appends the key of row i of cols: each value's text with its
// length, a null as a marker, so equal rows (and only they) have equal
// keys. NULL equals NULL, as equality deletes require.
func appendKey(buf []byte, cols []arrow.Array, i int) []byte {
	for _, c := range cols {
		if c.IsNull(i) {
			buf = append(buf, 0)
			continue
		}
		v := c.ValueStr(i)
		buf = append(buf, 1)
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
	}
	return buf
}

// liveness is what deletes a data file's rows in one snapshot.
type liveness struct {
	pos []int64    // deleted positions, sorted
	eq  []*eqGroup // equality deletes, by equality_ids
}

// eqGroup is the equality deletes with one list of equality_ids: the
// read batch's columns of those fields and the delete files' row keys.
type eqGroup struct {
	cols []int
	sets []map[string]struct{}
}

// live sets live[i] for rows [start, start+len(live)) of the file, rows
// of rec: true unless a delete removes it. A nil l (no such file) leaves
// every row dead.
func (l *liveness) live(rec arrow.RecordBatch, start int64, live []bool) {
	if l == nil {
		clear(live)
		return
	}
	for i := range live {
		live[i] = true
	}
	n := int64(len(live))
	for j := sort.Search(len(l.pos), func(k int) bool { return l.pos[k] >= start }); j < len(l.pos) && l.pos[j] < start+n; j++ {
		live[l.pos[j]-start] = false
	}
	var buf []byte
	for _, g := range l.eq {
		cols := make([]arrow.Array, len(g.cols))
		for j, c := range g.cols {
			cols[j] = rec.Column(c)
		}
		for i := range live {
			if !live[i] {
				continue
			}
			buf = appendKey(buf[:0], cols, i)
			for _, set := range g.sets {
				if _, ok := set[string(buf)]; ok {
					live[i] = false
					break
				}
			}
		}
	}
}

// plain reports whether l deletes nothing.
func (l *liveness) plain() bool { return l != nil && len(l.pos) == 0 && len(l.eq) == 0 }

// fileReader reads one unit into the table's change schema.
type fileReader struct {
	pq       *format.ParquetReader // owns and closes the data file
	read     *arrow.Schema         // pq's batches: the table's columns, hidden ones, the weight
	row      int64                 // rows of the file read: the checkpoint's Row
	batch    int
	nulls    bool // the file has none of the columns read: its rows are NULLs
	alloc    memory.Allocator
	n        int // the table's columns, first in pq's batches
	change   *arrow.Schema
	old, new *liveness
	liveOld  []bool
	liveNew  []bool
}

// next returns the unit's changes in the next batch of the file: nil
// when it has none, io.EOF after the file's last row.
func (r *fileReader) next(ctx context.Context) (arrow.RecordBatch, error) {
	start := r.row
	var rec arrow.RecordBatch
	if !r.nulls {
		var err error
		rec, err = r.pq.Next(ctx)
		switch {
		case errors.Is(err, io.EOF) && r.row < r.pq.NumRows():
			// format.ParquetReader reads no rows from a file that has
			// none of the columns asked for (a table of columns added
			// after the file was written); they are NULL in every row.
			r.nulls = true
		case err != nil:
			return nil, err
		default:
			r.row = r.pq.Row()
		}
	}
	if r.nulls {
		if r.row >= r.pq.NumRows() {
			return nil, io.EOF
		}
		n := min(int64(r.batch), r.pq.NumRows()-r.row)
		cols := make([]arrow.Array, 0, r.read.NumFields())
		for _, f := range r.read.Fields()[:r.read.NumFields()-1] {
			cols = append(cols, array.MakeArrayOfNull(r.alloc, f.Type, int(n)))
		}
		cols = append(cols, format.Ones(r.alloc, int(n)))
		rec = array.NewRecordBatch(r.read, cols, n)
		for _, c := range cols {
			c.Release()
		}
		r.row += n
	}
	defer rec.Release()
	n := int(rec.NumRows())
	if r.old == nil && r.new.plain() && int(rec.NumCols()) == r.n+1 {
		rec.Retain() // every row, weight +1, as read
		return rec, nil
	}
	r.liveOld, r.liveNew = slices.Grow(r.liveOld[:0], n)[:n], slices.Grow(r.liveNew[:0], n)[:n]
	r.old.live(rec, start, r.liveOld)
	r.new.live(rec, start, r.liveNew)
	idx := array.NewInt64Builder(r.alloc)
	defer idx.Release()
	w := array.NewInt64Builder(r.alloc)
	defer w.Release()
	idx.Reserve(n)
	w.Reserve(n)
	for i := range n {
		switch {
		case r.liveNew[i] && !r.liveOld[i]:
			idx.UnsafeAppend(int64(i))
			w.UnsafeAppend(1)
		case r.liveOld[i] && !r.liveNew[i]:
			idx.UnsafeAppend(int64(i))
			w.UnsafeAppend(-1)
		}
	}
	if idx.Len() == 0 {
		return nil, nil
	}
	rows := int64(idx.Len())
	take := idx.NewArray()
	defer take.Release()
	cols := make([]arrow.Array, 0, r.n+1)
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	ctx = compute.WithAllocator(ctx, r.alloc)
	for j := range r.n {
		c := rec.Column(j)
		if int(rows) == n {
			c.Retain()
			cols = append(cols, c)
			continue
		}
		t, err := compute.TakeArray(ctx, c, take)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", r.change.Field(j).Name, err)
		}
		cols = append(cols, t)
	}
	cols = append(cols, w.NewArray())
	return array.NewRecordBatch(r.change, cols, rows), nil
}

// Close closes the data file.
func (r *fileReader) Close() error { return r.pq.Close() }
