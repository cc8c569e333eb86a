package connectors

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pipeline"
)

// Sink is an output connector: it delivers a table's changes to a
// destination (a PostgreSQL table, a Kafka topic, a Delta table, a file)
// exactly once, keeping its position inside the destination itself, as
// Kafka Connect's sinks keep theirs (KIP-618's exactly-once sinks commit
// the offset with the data). The Deliver activity calls its methods from
// one goroutine:
//
//	delivered, _ := sink.Open(ctx)            // the destination's own position
//	for each table version v > delivered, in order:
//	    sink.Write(ctx, changes of v)         // zero or more batches
//	    ... (several versions may go into one commit)
//	sink.Commit(ctx, v)                       // atomically: the data and "delivered = v"
//	sink.Close()
//
// Positions are versions of the table's Delta table (store.Table): every
// change of versions up to and including the delivered one is in the
// destination, none of a later one.
type Sink interface {
	// Open reaches the destination, checks it (the table exists, the
	// column types fit) and returns the last table version it holds
	// durably, or -1 when it holds none. Unreachable destinations,
	// refused credentials, a missing table and a column that does not
	// fit are errors here, marked with [Fatal] when retrying cannot
	// help; nothing may have been written.
	Open(ctx context.Context) (delivered int64, err error)
	// Write adds changes to the open transaction: b.Record has the table's
	// columns then the int64 weight column (pipeline.WithWeight), +1 an
	// insert, -1 a delete. It may buffer or send; nothing is visible to
	// readers of the destination before Commit.
	Write(ctx context.Context, b ChangeBatch) error
	// Commit makes every change written since the last Commit durable and
	// visible, atomically with the position version, so that a crash
	// leaves either both or neither. A sink that cannot do this (a file
	// without its position beside it) says so in [Guarantee].
	Commit(ctx context.Context, version int64) error
	// Close releases what Open acquired, aborting an open transaction. It
	// is safe to call after a failed Open.
	Close() error
}

// ChangeBatch is a record batch of changes of one table version.
type ChangeBatch struct {
	// Record holds the table's columns and the weight column. The sink
	// does not own it: it must not Release it, nor keep it past Write
	// without Retain.
	Record arrow.RecordBatch
	// Version is the table version the changes belong to.
	Version int64
	// Time is when the version was committed (its commitInfo timestamp),
	// for Feldera's __feldera_ts column.
	Time time.Time
}

// SinkMetrics is optionally implemented by sinks that count what they
// send in bytes and encoding errors themselves (Feldera's output endpoint
// metrics transmitted_bytes and num_encode_errors). The counts are
// cumulative over the sink's life.
type SinkMetrics interface {
	Transmitted() (bytes int64, encodeErrors int64)
}

// Guarantee is a connector's delivery guarantee (LaminarDB's
// DeliveryGuarantee): exactly once or at least once across crashes.
type Guarantee string

// The delivery guarantees.
const (
	ExactlyOnce Guarantee = "exactly_once"
	AtLeastOnce Guarantee = "at_least_once"
)

// Guaranteed is implemented by sources and sinks whose guarantee is not
// exactly once (or depends on their config); the others are exactly once.
type Guaranteed interface {
	Guarantee() Guarantee
}

// SinkParams is what a sink transport's factory builds a [Sink] from.
type SinkParams struct {
	// Endpoint is "table.connector", for messages.
	Endpoint string
	// Pipeline, Table and Connector name the output, for positions kept
	// in the destination (a Delta txn appId, a row of _sluice_offsets).
	Pipeline, Table, Connector string
	// TableID is the id of the table's Delta table (store.Table.ID, its
	// metaData id). A sink keeps it with its position and checks it at
	// Open with [SinkParams.CheckTableID]: versions are numbers of one
	// table, and the same names may later stand for a new table (a
	// pipeline recreated with an empty store) whose version 5 is not the
	// old one's. Empty: not checked.
	TableID string
	// Config is the transport's config with ${env:NAME} references
	// resolved.
	Config json.RawMessage
	// Format is the connector's format, or nil.
	Format *pipeline.Format
	// Schema is the table's schema (without the weight column).
	Schema *arrow.Schema
	// PrimaryKey names the table's primary key columns, if any.
	PrimaryKey []string
	// Allocator allocates what the sink builds; memory.DefaultAllocator
	// if nil.
	Allocator memory.Allocator
}

// Alloc returns the allocator to use.
func (p SinkParams) Alloc() memory.Allocator {
	if p.Allocator == nil {
		return memory.DefaultAllocator
	}
	return p.Allocator
}

// CheckTableID is a sink's check, at Open, that the position its
// destination holds belongs to this table: held is the table id stored
// with the position ("" when the destination holds none, or a position
// written before ids were kept, which is accepted). A different id is a
// [Fatal] error that names both and says how to go on: the destination
// holds another incarnation's changes, and delivering this table's
// versions after that position would skip or mix them.
func (p SinkParams) CheckTableID(held string) error {
	if held == "" || p.TableID == "" || held == p.TableID {
		return nil
	}
	return Fatal(fmt.Errorf("the destination holds the changes of table id %s up to its position, but table %s is now id %s (the pipeline's table store was recreated): give the output a new destination, or clear its position there (the output's README section says where it is kept) to deliver the new table from its start",
		held, p.Table, p.TableID))
}

// SinkFactory validates an output transport's config (no I/O) and
// returns a Sink ready to Open. Config errors are as [Factory]'s.
type SinkFactory func(p SinkParams) (Sink, error)
