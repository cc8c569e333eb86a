package format

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/pipeline"
)

// ParquetReader reads a Parquet file into record batches in a table's
// change schema, with arrow-go's pqarrow reader. File columns are matched
// to table columns by name (exactly, else case-insensitively) and cast to
// the column's type when they differ; a table column the file lacks is
// NULL. The position is the number of rows read, so a reader opened at row
// N resumes exactly after the first N rows.
type ParquetReader struct {
	alloc  memory.Allocator
	schema *arrow.Schema // table schema
	change *arrow.Schema // table schema and weight
	pf     *file.Reader
	rr     pqarrow.RecordReader
	cols   []int // index into the record reader's columns per table column, or -1
	row    int64 // rows returned so far, from the file's start
	skip   int64 // rows still to drop at the start of the next batches
}

// OpenParquet opens r as Parquet and positions the reader at row startRow.
// A file that is not Parquet, or whose columns cannot be cast to the
// table's types, is a fatal error.
func OpenParquet(ctx context.Context, r parquet.ReaderAtSeeker, schema *arrow.Schema, alloc memory.Allocator, batchSize int, startRow int64) (*ParquetReader, error) {
	return OpenParquetMatched(ctx, r, schema, ByName(nil), alloc, batchSize, startRow)
}

// OpenParquetColumns is [OpenParquet] with the file's column name for
// each table column ([ByName]). Delta Lake's column mapping uses it, where
// files name columns by their physical names.
func OpenParquetColumns(ctx context.Context, r parquet.ReaderAtSeeker, schema *arrow.Schema, fileNames []string, alloc memory.Allocator, batchSize int, startRow int64) (*ParquetReader, error) {
	return OpenParquetMatched(ctx, r, schema, ByName(fileNames), alloc, batchSize, startRow)
}

// ColumnMatcher picks the file column read as table column i: an index
// into fileSchema's top-level fields, or -1 when the file has none (the
// column is then NULL, or an error if it is NOT NULL). The name it
// returns is the column's name in the file, for messages.
type ColumnMatcher func(i int, table arrow.Field, fileSchema *arrow.Schema) (index int, name string)

// ByName matches by name: fileNames[i] for table column i, or the table
// column's own name where fileNames has "" or is too short; exactly,
// else case-insensitively.
func ByName(fileNames []string) ColumnMatcher {
	return func(i int, table arrow.Field, fileSchema *arrow.Schema) (int, string) {
		name := table.Name
		if i < len(fileNames) && fileNames[i] != "" {
			name = fileNames[i]
		}
		if idx := fileSchema.FieldIndices(name); len(idx) > 0 {
			return idx[0], name
		}
		for j, ff := range fileSchema.Fields() {
			if strings.EqualFold(ff.Name, name) {
				return j, name
			}
		}
		return -1, name
	}
}

// ByFieldID matches by Parquet field id (the PARQUET:field_id metadata
// arrow-go sets), as Iceberg readers must (Iceberg spec, "Column
// Projection"): ids[i] for table column i, 0 for none. Files written
// without field ids, and table columns without an id, fall back to
// fallback.
func ByFieldID(ids []int, fallback ColumnMatcher) ColumnMatcher {
	return func(i int, table arrow.Field, fileSchema *arrow.Schema) (int, string) {
		if i < len(ids) && ids[i] > 0 {
			want := strconv.Itoa(ids[i])
			hasIDs := false
			for j, ff := range fileSchema.Fields() {
				id, ok := ff.Metadata.GetValue("PARQUET:field_id")
				if !ok || id == "-1" {
					continue
				}
				hasIDs = true
				if id == want {
					return j, ff.Name
				}
			}
			if hasIDs {
				return -1, "field id " + want
			}
		}
		return fallback(i, table, fileSchema)
	}
}

// OpenParquetMatched is [OpenParquet] with the columns matched by match.
func OpenParquetMatched(ctx context.Context, r parquet.ReaderAtSeeker, schema *arrow.Schema, match ColumnMatcher, alloc memory.Allocator, batchSize int, startRow int64) (*ParquetReader, error) {
	pf, err := file.NewParquetReader(r, file.WithReadProps(parquet.NewReaderProperties(alloc)))
	if err != nil {
		return nil, connectors.Fatal(fmt.Errorf("not a Parquet file: %w", err))
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: int64(batchSize), Parallel: false}, alloc)
	if err != nil {
		pf.Close()
		return nil, connectors.Fatal(err)
	}
	fileSchema, err := fr.Schema()
	if err != nil {
		pf.Close()
		return nil, connectors.Fatal(err)
	}
	p := &ParquetReader{alloc: alloc, schema: schema, change: pipeline.WithWeight(schema), pf: pf, row: startRow}
	var leaves []int
	for fi, f := range schema.Fields() {
		at, name := match(fi, f, fileSchema)
		if at < 0 {
			if !f.Nullable {
				pf.Close()
				return nil, connectors.Fatal(fmt.Errorf("the Parquet file has no column %q for NOT NULL column %s", name, f.Name))
			}
			p.cols = append(p.cols, -1)
			continue
		}
		idx := []int{at}
		ft := fileSchema.Field(idx[0]).Type
		if !arrow.TypeEqual(ft, f.Type) && !compute.CanCast(ft, f.Type) {
			pf.Close()
			return nil, connectors.Fatal(fmt.Errorf("column %s: cannot read Parquet %s as %s", f.Name, ft, f.Type))
		}
		p.cols = append(p.cols, len(leaves))
		leaves = append(leaves, idx[0])
	}
	// Skip whole row groups before startRow; drop the rest row by row.
	var groups []int
	var before int64
	for g := 0; g < pf.NumRowGroups(); g++ {
		n := pf.MetaData().RowGroup(g).NumRows()
		if len(groups) == 0 && before+n <= startRow { // only the groups before startRow
			before += n
			continue
		}
		groups = append(groups, g)
	}
	p.skip = startRow - before
	if len(groups) > 0 && len(leaves) > 0 {
		colIdx, err := columnLeaves(fr, leaves)
		if err != nil {
			pf.Close()
			return nil, connectors.Fatal(err)
		}
		p.rr, err = fr.GetRecordReader(ctx, colIdx, groups)
		if err != nil {
			pf.Close()
			return nil, connectors.Fatal(err)
		}
	}
	return p, nil
}

// columnLeaves maps top-level field indices to the Parquet leaf columns
// under them, as GetRecordReader wants.
func columnLeaves(fr *pqarrow.FileReader, fields []int) ([]int, error) {
	var out []int
	var collect func(sf *pqarrow.SchemaField)
	collect = func(sf *pqarrow.SchemaField) {
		if sf.IsLeaf() {
			out = append(out, sf.ColIndex)
		}
		for i := range sf.Children {
			collect(&sf.Children[i])
		}
	}
	for _, f := range fields {
		collect(&fr.Manifest.Fields[f])
	}
	return out, nil
}

// NumRows returns the file's row count.
func (p *ParquetReader) NumRows() int64 { return p.pf.NumRows() }

// Row returns the rows read so far from the file's start: the checkpoint.
func (p *ParquetReader) Row() int64 { return p.row }

// Next returns the next record batch in the change schema (weights +1);
// io.EOF after the last. The caller releases the batch.
func (p *ParquetReader) Next(ctx context.Context) (arrow.RecordBatch, error) {
	for {
		if p.rr == nil {
			return nil, io.EOF
		}
		rec, err := p.rr.Read()
		if errors.Is(err, io.EOF) || (err == nil && rec == nil) {
			return nil, io.EOF
		}
		if err != nil {
			return nil, fmt.Errorf("read Parquet: %w", err)
		}
		n := rec.NumRows()
		if p.skip >= n {
			p.skip -= n
			continue
		}
		out, err := p.convert(ctx, rec, p.skip)
		p.skip = 0
		if err != nil {
			return nil, err
		}
		p.row += out.NumRows()
		return out, nil
	}
}

// convert picks, casts and orders columns, drops the first skip rows and
// appends the weight column. rec is owned by the record reader.
func (p *ParquetReader) convert(ctx context.Context, rec arrow.RecordBatch, skip int64) (arrow.RecordBatch, error) {
	n := rec.NumRows() - skip
	cols := make([]arrow.Array, 0, len(p.cols)+1)
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	ctx = compute.WithAllocator(ctx, p.alloc)
	for i, ci := range p.cols {
		f := p.schema.Field(i)
		var a arrow.Array
		if ci < 0 {
			a = array.MakeArrayOfNull(p.alloc, f.Type, int(n))
		} else {
			src := rec.Column(ci)
			if skip > 0 {
				src = array.NewSlice(src, skip, rec.NumRows())
			} else {
				src.Retain()
			}
			if arrow.TypeEqual(src.DataType(), f.Type) {
				a = src
			} else {
				cast, err := compute.CastArray(ctx, src, compute.SafeCastOptions(f.Type))
				src.Release()
				if err != nil {
					return nil, connectors.Fatal(fmt.Errorf("column %s: %w", f.Name, err))
				}
				a = cast
			}
		}
		cols = append(cols, a)
	}
	cols = append(cols, Ones(p.alloc, int(n)))
	return array.NewRecordBatch(p.change, cols, n), nil
}

// Close releases the file.
func (p *ParquetReader) Close() error {
	if p.rr != nil {
		p.rr.Release()
	}
	return p.pf.Close()
}

// Ones returns an int64 array of n weights of +1.
func Ones(alloc memory.Allocator, n int) arrow.Array {
	b := array.NewInt64Builder(alloc)
	defer b.Release()
	b.Reserve(n)
	for range n {
		b.UnsafeAppend(1)
	}
	return b.NewArray()
}
