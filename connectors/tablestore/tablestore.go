// Package tablestore is the table store, the output of every Sluice table:
// each commit is one Parquet file under <root>/<pipeline>/<table>/, and
// the checkpoint of the connector that produced it travels inside that
// file's key-value metadata. A file appears under its final name only
// once it is complete and synced (write to a temporary name, fsync, link),
// so data and checkpoint commit together, atomically: after a crash at any
// instant, every record up to a connector's newest checkpoint is in the
// store exactly once and nothing after it is.
//
// File names are <seq>-<connector>.parquet, where seq orders every commit
// of the table (20 digits, so names sort in commit order). Rows carry the
// table's columns and the int64 weight column (+1 insert, -1 delete); any
// Parquet reader opens them (DuckDB: read_parquet('<dir>/*.parquet')).
//
// Concurrency: one writer per connector (the connector's Ingest activity).
// Writers of different connectors of one table may run in different
// processes against a shared directory; commit names are claimed with
// link(2), which fails if the name exists.
package tablestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// Metadata keys of a commit file.
const (
	KeyConnector  = "sluice.connector"
	KeyCheckpoint = "sluice.checkpoint"
	KeyCommit     = "sluice.commit" // the connector's commit number, from 1
	KeyTime       = "sluice.committed_at"
	KeyProgress   = "sluice.progress" // the writer's own totals, as JSON
)

// ErrFenced means another writer committed for the same connector since
// this writer's last commit: this writer is stale (a zombie activity
// attempt) and must stop.
var ErrFenced = errors.New("tablestore: another writer committed for this connector")

// Table is one table's directory.
type Table struct {
	dir   string
	alloc memory.Allocator
}

// Open returns the table <root>/<pipeline>/<table>, creating its directory.
func Open(root, pipelineName, table string, alloc memory.Allocator) (*Table, error) {
	if alloc == nil {
		alloc = memory.DefaultAllocator
	}
	dir := filepath.Join(root, pipelineName, table)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tablestore: %w", err)
	}
	return &Table{dir: dir, alloc: alloc}, nil
}

// Dir returns the table's directory.
func (t *Table) Dir() string { return t.dir }

// Commit is one committed file's metadata.
type Commit struct {
	// Seq orders commits within the table.
	Seq int64
	// Connector wrote the file.
	Connector string
	// Number counts the connector's commits, from 1.
	Number int64
	// Checkpoint is the connector's position just past the file's rows.
	Checkpoint json.RawMessage
	// Time is when the file was committed.
	Time time.Time
	// Progress is what the writer stored beside the checkpoint (the
	// Ingest activity's metrics).
	Progress json.RawMessage
	// Rows is the file's row count.
	Rows int64
	// Path is the file's path.
	Path string
}

type entry struct {
	seq       int64
	connector string
	name      string
}

// list returns the committed files, in commit order.
func (t *Table) list() ([]entry, error) {
	des, err := os.ReadDir(t.dir)
	if err != nil {
		return nil, fmt.Errorf("tablestore: %w", err)
	}
	var out []entry
	for _, de := range des {
		name := de.Name()
		if !strings.HasSuffix(name, ".parquet") || strings.HasPrefix(name, ".") {
			continue
		}
		seqStr, conn, ok := strings.Cut(strings.TrimSuffix(name, ".parquet"), "-")
		seq, err := strconv.ParseInt(seqStr, 10, 64)
		if !ok || err != nil {
			continue
		}
		out = append(out, entry{seq, conn, name})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out, nil
}

// Last returns the connector's newest commit, or nil if it has none.
func (t *Table) Last(connector string) (*Commit, error) {
	files, err := t.list()
	if err != nil {
		return nil, err
	}
	for i := len(files) - 1; i >= 0; i-- {
		if files[i].connector == connector {
			return t.readCommit(files[i])
		}
	}
	return nil, nil
}

// Commits returns every commit's metadata, in commit order.
func (t *Table) Commits() ([]Commit, error) {
	files, err := t.list()
	if err != nil {
		return nil, err
	}
	out := make([]Commit, 0, len(files))
	for _, f := range files {
		c, err := t.readCommit(f)
		if err != nil {
			return nil, err
		}
		out = append(out, *c)
	}
	return out, nil
}

func (t *Table) readCommit(e entry) (*Commit, error) {
	path := filepath.Join(t.dir, e.name)
	r, err := file.OpenParquetFile(path, false)
	if err != nil {
		return nil, fmt.Errorf("tablestore: %s: %w", path, err)
	}
	defer r.Close()
	kv := r.MetaData().KeyValueMetadata()
	c := &Commit{Seq: e.seq, Connector: e.connector, Rows: r.NumRows(), Path: path}
	if v := kv.FindValue(KeyCheckpoint); v != nil {
		c.Checkpoint = json.RawMessage(*v)
	}
	if v := kv.FindValue(KeyProgress); v != nil {
		c.Progress = json.RawMessage(*v)
	}
	if v := kv.FindValue(KeyCommit); v != nil {
		c.Number, _ = strconv.ParseInt(*v, 10, 64)
	}
	if v := kv.FindValue(KeyTime); v != nil {
		c.Time, _ = time.Parse(time.RFC3339Nano, *v)
	}
	return c, nil
}

// WriterProperties are the Parquet settings of every commit file: Snappy
// compression, dictionary encoding, Parquet 2.6.
func WriterProperties() *parquet.WriterProperties {
	return parquet.NewWriterProperties(
		parquet.WithCompression(compress.Codecs.Snappy),
		parquet.WithDictionaryDefault(true),
		parquet.WithMaxRowGroupLength(1<<20),
	)
}

// Commit writes recs (all in the table's change schema) as one file
// carrying checkpoint and progress, and makes it visible atomically. number is the
// connector's commit number (its previous commit's Number + 1); if the
// connector's newest commit is not number-1, Commit fails with
// [ErrFenced]. recs may be empty, to commit a checkpoint alone.
func (t *Table) Commit(ctx context.Context, connector string, number int64, schema *arrow.Schema, recs []arrow.RecordBatch, checkpoint, progress json.RawMessage) (*Commit, error) {
	tmp, err := os.CreateTemp(t.dir, ".commit-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("tablestore: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	now := time.Now().UTC()
	md := arrow.NewMetadata(
		[]string{KeyConnector, KeyCheckpoint, KeyCommit, KeyTime, KeyProgress},
		[]string{connector, string(checkpoint), strconv.FormatInt(number, 10), now.Format(time.RFC3339Nano), string(progress)},
	)
	w, err := pqarrow.NewFileWriter(arrow.NewSchema(schema.Fields(), &md), nopCloser{tmp}, WriterProperties(),
		pqarrow.NewArrowWriterProperties(pqarrow.WithAllocator(t.alloc), pqarrow.WithStoreSchema()))
	if err != nil {
		return nil, fmt.Errorf("tablestore: %w", err)
	}
	var rows int64
	for _, rec := range recs {
		if rec == nil || rec.NumRows() == 0 {
			continue
		}
		if err := w.WriteBuffered(rec); err != nil {
			w.Close()
			return nil, fmt.Errorf("tablestore: write: %w", err)
		}
		rows += rec.NumRows()
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("tablestore: write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("tablestore: sync: %w", err)
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		files, err := t.list()
		if err != nil {
			return nil, err
		}
		var prev int64
		var next int64 = 1
		if len(files) > 0 {
			next = files[len(files)-1].seq + 1
		}
		for i := len(files) - 1; i >= 0; i-- {
			if files[i].connector == connector {
				last, err := t.readCommit(files[i])
				if err != nil {
					return nil, err
				}
				prev = last.Number
				break
			}
		}
		if prev != number-1 {
			return nil, fmt.Errorf("%w: %s's newest commit is %d, this writer's previous is %d", ErrFenced, connector, prev, number-1)
		}
		name := fmt.Sprintf("%020d-%s.parquet", next, connector)
		err = os.Link(tmp.Name(), filepath.Join(t.dir, name))
		if errors.Is(err, os.ErrExist) {
			continue // another connector of this table took seq next: take the one after
		}
		if err != nil {
			return nil, fmt.Errorf("tablestore: commit: %w", err)
		}
		if err := syncDir(t.dir); err != nil {
			return nil, err
		}
		return &Commit{Seq: next, Connector: connector, Number: number, Checkpoint: checkpoint, Progress: progress, Time: now, Rows: rows, Path: filepath.Join(t.dir, name)}, nil
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("tablestore: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("tablestore: sync %s: %w", dir, err)
	}
	return nil
}

// nopCloser keeps pqarrow's writer from closing the file before Sync.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Scan calls fn with every record batch of every commit, in commit order.
// The batch is released after fn returns: retain it to keep it.
func (t *Table) Scan(ctx context.Context, fn func(c *Commit, rec arrow.RecordBatch) error) error {
	files, err := t.list()
	if err != nil {
		return err
	}
	for _, e := range files {
		c, err := t.readCommit(e)
		if err != nil {
			return err
		}
		if err := t.scanFile(ctx, c, fn); err != nil {
			return err
		}
	}
	return nil
}

func (t *Table) scanFile(ctx context.Context, c *Commit, fn func(c *Commit, rec arrow.RecordBatch) error) error {
	r, err := file.OpenParquetFile(c.Path, false)
	if err != nil {
		return fmt.Errorf("tablestore: %s: %w", c.Path, err)
	}
	defer r.Close()
	fr, err := pqarrow.NewFileReader(r, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, t.alloc)
	if err != nil {
		return fmt.Errorf("tablestore: %s: %w", c.Path, err)
	}
	if r.NumRowGroups() == 0 {
		return nil
	}
	rr, err := fr.GetRecordReader(ctx, nil, nil)
	if err != nil {
		return fmt.Errorf("tablestore: %s: %w", c.Path, err)
	}
	defer rr.Release()
	for rr.Next() {
		if err := fn(c, rr.RecordBatch()); err != nil {
			return err
		}
	}
	if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("tablestore: %s: %w", c.Path, err)
	}
	return nil
}
