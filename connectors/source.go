package connectors

import (
	"context"
	"encoding/json"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pipeline"
)

// Checkpoint is a source's position as JSON, opaque to everything but its
// source: datagen {"records": N}, file_input {"offset": N} (bytes) or
// {"row": N} (Parquet rows). A nil Checkpoint is the beginning of input.
type Checkpoint = json.RawMessage

// ParseError describes one malformed record that was skipped.
type ParseError struct {
	// Position locates the record in the source: "byte 1234", "row 17".
	Position string `json:"position"`
	// Message says what is wrong with it.
	Message string `json:"message"`
	// Record is the start of the record's text, at most 200 bytes.
	Record string `json:"record,omitempty"`
}

// Batch is what [Source.Read] returns: a record batch in the table's change
// schema (its columns, then the int64 weight column, see
// pipeline.ChangeSchema) and the checkpoint just past its records.
//
// The caller owns Record and must Release it. Record may be nil or empty
// when the source advanced without producing rows (only malformed records,
// say); Checkpoint is then still the position to resume from.
type Batch struct {
	Record     arrow.RecordBatch
	Checkpoint Checkpoint
	// Bytes is the number of source bytes this batch consumed (0 where the
	// source has no bytes, as datagen).
	Bytes int64
	// Errors lists the records skipped in this batch.
	Errors []ParseError
}

// Rows returns the number of records in the batch.
func (b Batch) Rows() int64 {
	if b.Record == nil {
		return 0
	}
	return b.Record.NumRows()
}

// Source is an input connector. Its methods are called from one goroutine.
type Source interface {
	// Open reaches the source and positions it just past checkpoint (nil:
	// the beginning). Unreachable sources, missing files and refused
	// credentials are errors here, marked with [Fatal] when retrying cannot
	// help.
	Open(ctx context.Context, checkpoint Checkpoint) error
	// Read blocks until it has a batch of at most Params.BatchSize records,
	// the source reaches end of input ([ErrEndOfInput]), or ctx ends
	// (ctx.Err()). "No data yet" is not an error: Read waits.
	Read(ctx context.Context) (Batch, error)
	// Close releases what Open acquired. It is safe to call after a failed
	// Open.
	Close() error
}

// Params is what a transport's factory builds a [Source] from.
type Params struct {
	// Endpoint is "table.connector", for messages.
	Endpoint string
	// Config is the transport's config with ${env:NAME} references resolved.
	Config json.RawMessage
	// Format is the connector's format, or nil.
	Format *pipeline.Format
	// Schema is the table's schema (without the weight column).
	Schema *arrow.Schema
	// BatchSize bounds the records of one [Batch].
	BatchSize int
	// Allocator allocates record batches; memory.DefaultAllocator if nil.
	Allocator memory.Allocator
}

// Alloc returns the allocator to use.
func (p Params) Alloc() memory.Allocator {
	if p.Allocator == nil {
		return memory.DefaultAllocator
	}
	return p.Allocator
}

// Factory validates a transport's config (no I/O) and returns a Source
// ready to Open. Config errors name the field relative to the transport
// config ("rate: must be positive") and are joined with errors.Join.
type Factory func(p Params) (Source, error)

// Resolver is implemented by sources whose start depends on when they
// first start: kafka_input's "latest" or a timestamp. Resolve returns the
// concrete checkpoint to start from. The Pipeline workflow calls it once,
// at a connector's first activation, and keeps the result in its state,
// so restarts never re-resolve (and silently skip or re-read) the start.
// Errors are as Open's.
type Resolver interface {
	Resolve(ctx context.Context) (Checkpoint, error)
}

// Committer is implemented by sources that must learn when what they
// returned has been committed to the table store: pub_sub_input
// acknowledges its messages only then, so that a crash before the commit
// has them redelivered. The Ingest activity calls Committed after every
// commit, with the checkpoint of the commit's last batch, from a
// goroutine other than Read's and concurrently with it: implementations
// synchronise. An error is reported (logged) but does not fail the
// connector: what was committed stays committed, and the source must cope
// with what it failed to acknowledge (a redelivery).
type Committer interface {
	Committed(ctx context.Context, checkpoint Checkpoint) error
}
