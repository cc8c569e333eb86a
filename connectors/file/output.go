package file

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

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/format"
	"github.com/sluicehq/sluice/pipeline"
)

// OutputConfig is Feldera's file_output config
// (https://docs.feldera.com/connectors/sinks/file).
type OutputConfig struct {
	// Path is the file the changes are appended to (json, csv), or for
	// parquet the directory that receives one Parquet file per commit.
	Path string `json:"path"`
}

// PositionSuffix is appended to a json or csv output's path to name the
// file that holds its delivered position, {"version": V, "size": N}: every
// change of table versions up to V is in the first N bytes of the output,
// none of a later version.
const PositionSuffix = ".sluice-position"

// flushBytes is how many encoded bytes Write buffers before it writes
// them to the file (still uncommitted: Open truncates them away after a
// crash, Close after an aborted commit).
const flushBytes = 4 << 20

// Output is the file_output transport: it appends a table's changes to a
// local file, exactly once.
//
// With json and csv, each commit appends its encoded changes to the file,
// fsyncs it, then replaces the position file <path>.sluice-position
// atomically (a temporary file, fsync, rename, fsync of the directory).
// Open truncates the file to the size the position records, removing the
// bytes of a commit whose position never landed, so a crash at any moment
// leaves every change in the file exactly once after the output resumes.
// A file without a position file is truncated to empty, as Feldera's
// file_output creates its file afresh. Readers should read no further
// than the position's size: bytes past it belong to a commit in progress.
//
// With parquet, path is a directory and each commit is one Parquet file
// part-<version>.parquet (20 digits) of the change schema (the table's
// columns and _weight), written to a temporary name and renamed into
// place after fsync: the newest part's version is the delivered
// position, and Open removes the temporary file of a commit that never
// finished. Parquet files cannot be appended to after their footer, so a
// commit is a file.
//
// The Deliver activity calls its methods from one goroutine.
type Output struct {
	cfg     OutputConfig
	p       connectors.SinkParams
	enc     format.Encoder // nil for parquet
	parquet bool

	f         *os.File
	size      int64 // committed bytes (json, csv)
	written   int64 // bytes written to f, committed or not
	buf       []byte
	delivered int64

	pq     *pqarrow.FileWriter // the open commit's Parquet file, or nil
	pqFile *os.File

	bytes, encodeErrors int64
	// failed is a write error: the file holds an unknown part of the
	// buffer, so no later Commit may record a position until Close and
	// Open truncate it back.
	failed error
}

// NewOutput validates the config and format; it does not touch the file.
// Formats: json (update_format insert_delete, raw, debezium; array), csv,
// parquet.
func NewOutput(p connectors.SinkParams) (connectors.Sink, error) {
	var cfg OutputConfig
	if err := connectors.DecodeConfig("transport", p.Config, &cfg); err != nil {
		return nil, err
	}
	var errs []error
	if cfg.Path == "" {
		errs = append(errs, connectors.TransportError("path", "required"))
	}
	o := &Output{cfg: cfg, p: p, delivered: -1}
	if p.Format != nil && p.Format.Name == "parquet" {
		o.parquet = true
		if len(p.Format.Config) > 0 && strings.TrimSpace(string(p.Format.Config)) != "{}" && strings.TrimSpace(string(p.Format.Config)) != "null" {
			errs = append(errs, connectors.FormatError("config", "parquet output takes no options"))
		}
	} else {
		enc, err := format.NewEncoder(p.Format, p.Schema)
		if err != nil {
			errs = append(errs, err)
		}
		o.enc = enc
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return o, nil
}

// Guarantee reports exactly once, for every format.
func (o *Output) Guarantee() connectors.Guarantee { return connectors.ExactlyOnce }

// Transmitted returns the bytes written to the file and the changes that
// could not be encoded (deletes with json's raw update format).
func (o *Output) Transmitted() (bytes int64, encodeErrors int64) {
	return o.bytes, o.encodeErrors
}

// position is the content of the position file.
type position struct {
	Version int64 `json:"version"`
	Size    int64 `json:"size"`
	// TableID is the table the version belongs to
	// (connectors.SinkParams.TableID); absent in files of earlier
	// Sluice versions.
	TableID string `json:"table_id,omitempty"`
}

// Open opens or creates the file (the directory for parquet), restores
// the last committed state and returns its version, or -1.
func (o *Output) Open(ctx context.Context) (int64, error) {
	if o.parquet {
		return o.openParquet()
	}
	pos := position{Version: -1}
	b, err := os.ReadFile(o.cfg.Path + PositionSuffix)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &pos); err != nil {
			return 0, connectors.Fatal(fmt.Errorf("file_output position %s: %w", o.cfg.Path+PositionSuffix, err))
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return 0, connectors.Fatal(err)
	}
	f, err := os.OpenFile(o.cfg.Path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return 0, connectors.Fatal(err) // *fs.PathError: "open PATH: reason"
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, err
	}
	if st.Size() < pos.Size {
		f.Close()
		return 0, connectors.Fatal(fmt.Errorf("%s has %d bytes, but its position file says %d were delivered (version %d): the file was truncated or replaced; remove %s to deliver the table again from the start",
			o.cfg.Path, st.Size(), pos.Size, pos.Version, o.cfg.Path+PositionSuffix))
	}
	if st.Size() > pos.Size {
		// The bytes of a commit whose position never landed.
		if err := f.Truncate(pos.Size); err != nil {
			f.Close()
			return 0, fmt.Errorf("truncate %s to %d bytes: %w", o.cfg.Path, pos.Size, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return 0, err
		}
	}
	if _, err := f.Seek(pos.Size, io.SeekStart); err != nil {
		f.Close()
		return 0, err
	}
	if pos.Version >= 0 {
		if err := o.p.CheckTableID(pos.TableID); err != nil {
			f.Close()
			return 0, err
		}
	}
	o.f, o.size, o.written, o.delivered = f, pos.Size, pos.Size, pos.Version
	return pos.Version, nil
}

// Write encodes the changes; they reach the file by Commit at the latest.
func (o *Output) Write(ctx context.Context, b connectors.ChangeBatch) error {
	if o.parquet {
		return o.writeParquet(b)
	}
	if o.f == nil {
		return errors.New("file_output: Write before Open")
	}
	var (
		failed int
		err    error
	)
	o.buf, failed, err = o.enc.EncodeBatch(o.buf, b.Record)
	o.encodeErrors += int64(failed)
	if err != nil && failed == 0 {
		return connectors.Fatal(fmt.Errorf("file_output: encode: %w", err))
	}
	if len(o.buf) >= flushBytes {
		return o.flush()
	}
	return nil
}

func (o *Output) flush() error {
	if len(o.buf) == 0 {
		return nil
	}
	if o.failed != nil {
		return o.failed
	}
	n, err := o.f.Write(o.buf)
	o.written += int64(n)
	if err != nil {
		o.failed = fmt.Errorf("write %s: %w (reopen to retry)", o.cfg.Path, err)
		return o.failed
	}
	o.bytes += int64(n)
	o.buf = o.buf[:0]
	return nil
}

// Commit writes what Write buffered, fsyncs the file, then records
// version and the file's size in the position file, atomically.
func (o *Output) Commit(ctx context.Context, version int64) error {
	if o.parquet {
		return o.commitParquet(version)
	}
	if o.f == nil {
		return errors.New("file_output: Commit before Open")
	}
	if err := o.flush(); err != nil {
		return err
	}
	if o.failed != nil {
		return o.failed
	}
	if err := o.f.Sync(); err != nil {
		// After a failed fsync the page cache may have dropped the
		// bytes: only a reopen (truncate to the position) is safe.
		o.failed = fmt.Errorf("fsync %s: %w (reopen to retry)", o.cfg.Path, err)
		return o.failed
	}
	b, _ := json.Marshal(position{Version: version, Size: o.written, TableID: o.p.TableID})
	if err := writeAtomic(o.cfg.Path+PositionSuffix, b); err != nil {
		return err
	}
	o.size, o.delivered = o.written, version
	return nil
}

// Close drops uncommitted changes (truncating the file to its committed
// size) and closes the file.
func (o *Output) Close() error {
	o.buf = nil
	if o.pq != nil {
		o.abortParquet()
	}
	if o.f == nil {
		return nil
	}
	var errs []error
	if o.written > o.size {
		errs = append(errs, o.f.Truncate(o.size))
	}
	errs = append(errs, o.f.Close())
	o.f = nil
	return errors.Join(errs...)
}

// writeAtomic replaces path with data: a temporary file beside it,
// fsync, rename, fsync of the directory.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// Parquet parts: part-<version>.parquet, and the commit in progress.
const (
	partPrefix = "part-"
	partSuffix = ".parquet"
	partTemp   = ".parquet.tmp"
)

// PartName returns the name of the Parquet file file_output writes for
// the commit of version, inside its directory.
func PartName(version int64) string {
	return fmt.Sprintf("%s%020d%s", partPrefix, version, partSuffix)
}

func (o *Output) openParquet() (int64, error) {
	if err := os.MkdirAll(o.cfg.Path, 0o755); err != nil {
		return 0, connectors.Fatal(err)
	}
	entries, err := os.ReadDir(o.cfg.Path)
	if err != nil {
		return 0, connectors.Fatal(err)
	}
	var versions []int64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, partPrefix) {
			continue
		}
		if strings.HasSuffix(name, partTemp) {
			// A commit that never finished.
			if err := os.Remove(filepath.Join(o.cfg.Path, name)); err != nil {
				return 0, err
			}
			continue
		}
		if !strings.HasSuffix(name, partSuffix) {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(name, partPrefix), partSuffix), 10, 64)
		if err == nil {
			versions = append(versions, v)
		}
	}
	sort.Slice(versions, func(i, j int) bool { return versions[i] < versions[j] })
	o.delivered = -1
	if len(versions) > 0 {
		o.delivered = versions[len(versions)-1]
		held, err := os.ReadFile(filepath.Join(o.cfg.Path, TableIDFile))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, connectors.Fatal(err)
		}
		if err := o.p.CheckTableID(string(held)); err != nil {
			return 0, err
		}
	}
	return o.delivered, nil
}

// TableIDFile names the file, in a parquet file_output's directory, that
// holds the id of the table its parts belong to
// (connectors.SinkParams.TableID), written before the first part.
const TableIDFile = ".sluice-table"

func (o *Output) tempPart() string {
	return filepath.Join(o.cfg.Path, partPrefix+"pending"+partTemp)
}

// startParquet opens the temporary file of the commit in progress.
func (o *Output) startParquet() error {
	f, err := os.OpenFile(o.tempPart(), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return connectors.Fatal(err)
	}
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy), parquet.WithAllocator(o.p.Alloc()))
	w, err := pqarrow.NewFileWriter(pipeline.WithWeight(o.p.Schema), f, props, pqarrow.NewArrowWriterProperties(pqarrow.WithAllocator(o.p.Alloc()), pqarrow.WithStoreSchema()))
	if err != nil {
		f.Close()
		return connectors.Fatal(err)
	}
	o.pq, o.pqFile = w, f
	return nil
}

func (o *Output) writeParquet(b connectors.ChangeBatch) error {
	if o.pq == nil {
		if err := o.startParquet(); err != nil {
			return err
		}
	}
	if b.Record == nil || b.Record.NumRows() == 0 {
		return nil
	}
	change := pipeline.WithWeight(o.p.Schema)
	if !change.Equal(b.Record.Schema()) {
		// Same columns, other field metadata or nullability: the file's schema.
		rec := array.NewRecordBatch(change, b.Record.Columns(), b.Record.NumRows())
		defer rec.Release()
		return o.pq.WriteBuffered(rec)
	}
	return o.pq.WriteBuffered(b.Record)
}

func (o *Output) commitParquet(version int64) error {
	if o.delivered < 0 && o.p.TableID != "" {
		if err := writeAtomic(filepath.Join(o.cfg.Path, TableIDFile), []byte(o.p.TableID)); err != nil {
			return err
		}
	}
	if o.pq == nil {
		// A commit without changes still moves the position: an empty part.
		if err := o.startParquet(); err != nil {
			return err
		}
	}
	w, f := o.pq, o.pqFile
	o.pq, o.pqFile = nil, nil
	// Close writes the footer; it closes f too (pqarrow closes the sink
	// if it is an io.Closer), so sync through a new handle afterwards.
	if err := w.Close(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", o.tempPart(), err)
	}
	if err := syncFile(o.tempPart()); err != nil {
		return err
	}
	st, err := os.Stat(o.tempPart())
	if err != nil {
		return err
	}
	if err := os.Rename(o.tempPart(), filepath.Join(o.cfg.Path, PartName(version))); err != nil {
		return err
	}
	if err := syncDir(o.cfg.Path); err != nil {
		return err
	}
	o.bytes += st.Size()
	o.delivered = version
	return nil
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return nil
}

func (o *Output) abortParquet() {
	o.pq.Close()
	o.pqFile.Close()
	os.Remove(o.tempPart())
	o.pq, o.pqFile = nil, nil
}
