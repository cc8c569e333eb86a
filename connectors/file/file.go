// Package file is the file_input transport
// (https://docs.feldera.com/connectors/sources/file): a local file read
// with the connector's format. Byte formats (json, csv) checkpoint the byte
// offset just past the last whole record, {"offset": N}; parquet
// checkpoints the rows read, {"row": N}. Without follow the connector
// reaches end of input at the end of the file; with follow it waits for
// the file to grow, like tail -f.
//
// It is also the file_output transport (output.go): a table's changes
// written to a file with an output format, exactly once by keeping the
// delivered version and the file's size beside it (PositionSuffix) and
// truncating to that size on restart; parquet writes one part file per
// commit into a directory.
package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/format"
)

// Config is Feldera's file_input config.
type Config struct {
	// Path is the file to read.
	Path string `json:"path"`
	// Follow keeps reading as the file grows; the connector then never
	// reaches end of input.
	Follow bool `json:"follow,omitempty"`
	// BufferSizeBytes is accepted for compatibility with Feldera.
	BufferSizeBytes int `json:"buffer_size_bytes,omitempty"`
}

// PollInterval is how often a followed file is checked for new bytes.
const PollInterval = 100 * time.Millisecond

// Source reads a file.
type Source struct {
	cfg     Config
	p       connectors.Params
	parquet bool
	parser  format.Parser
	f       *os.File
	rows    *format.Rows
	stream  *format.Stream
	pq      *format.ParquetReader
}

// Checkpoint is file_input's position: Offset in bytes for byte formats,
// Row for parquet.
type Checkpoint struct {
	Offset int64 `json:"offset,omitempty"`
	Row    int64 `json:"row,omitempty"`
}

// New validates the config and format; it does not touch the file.
func New(p connectors.Params) (connectors.Source, error) {
	var cfg Config
	if err := connectors.DecodeConfig("transport", p.Config, &cfg); err != nil {
		return nil, err
	}
	var errs []error
	if cfg.Path == "" {
		errs = append(errs, connectors.TransportError("path", "required"))
	}
	s := &Source{cfg: cfg, p: p}
	if p.Format != nil && p.Format.Name == "parquet" {
		s.parquet = true
		if cfg.Follow {
			errs = append(errs, connectors.TransportError("follow", "a Parquet file cannot be followed"))
		}
	} else {
		parser, err := format.NewParser(p.Format, p.Schema)
		if err != nil {
			errs = append(errs, err)
		}
		s.parser = parser
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// Open opens the file and seeks to the checkpoint. A missing or unreadable
// file is fatal.
func (s *Source) Open(ctx context.Context, cp connectors.Checkpoint) error {
	var c Checkpoint
	if len(cp) > 0 {
		if err := json.Unmarshal(cp, &c); err != nil {
			return connectors.Fatal(fmt.Errorf("file_input checkpoint %s: %w", cp, err))
		}
	}
	f, err := os.Open(s.cfg.Path)
	if err != nil {
		return connectors.Fatal(err) // *fs.PathError: "open PATH: reason"
	}
	s.f = f
	if s.parquet {
		s.pq, err = format.OpenParquet(ctx, f, s.p.Schema, s.p.Alloc(), s.p.BatchSize, c.Row)
		if err != nil {
			return fmt.Errorf("%s: %w", s.cfg.Path, err)
		}
		return nil
	}
	if _, err := f.Seek(c.Offset, io.SeekStart); err != nil {
		return connectors.Fatal(fmt.Errorf("seek %s to byte %d: %w", s.cfg.Path, c.Offset, err))
	}
	s.rows = format.NewRows(s.p.Alloc(), s.p.Schema)
	s.stream = format.NewStream(f, c.Offset, s.parser, s.rows, s.p.BatchSize)
	return nil
}

// Read returns the next batch; with follow, it waits for the file to grow.
func (s *Source) Read(ctx context.Context) (connectors.Batch, error) {
	if s.parquet {
		rec, err := s.pq.Next(ctx)
		if errors.Is(err, io.EOF) {
			return connectors.Batch{}, connectors.ErrEndOfInput
		}
		if err != nil {
			return connectors.Batch{}, err
		}
		cp, _ := json.Marshal(Checkpoint{Row: s.pq.Row()})
		return connectors.Batch{Record: rec, Checkpoint: cp}, nil
	}
	for {
		c, err := s.stream.Next(!s.cfg.Follow)
		switch {
		case err == nil:
			cp, _ := json.Marshal(Checkpoint{Offset: c.Offset})
			return connectors.Batch{Record: c.Record, Checkpoint: cp, Bytes: c.Bytes, Errors: c.Errors}, nil
		case errors.Is(err, io.EOF):
			return connectors.Batch{}, connectors.ErrEndOfInput
		case errors.Is(err, format.ErrNoData):
			select {
			case <-ctx.Done():
				return connectors.Batch{}, ctx.Err()
			case <-time.After(PollInterval):
			}
		default:
			return connectors.Batch{}, fmt.Errorf("read %s: %w", s.cfg.Path, err)
		}
	}
}

// Close closes the file.
func (s *Source) Close() error {
	if s.rows != nil {
		s.rows.Release()
	}
	if s.pq != nil {
		return s.pq.Close() // closes the file too
	}
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}

// Bounded reports whether the file is read once (follow is false).
func (s *Source) Bounded() bool { return !s.cfg.Follow }
