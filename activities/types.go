package activities

import (
	"encoding/json"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/pipeline"
)

// Metrics are a connector's counters, cumulative over every activation,
// with Feldera's names (https://docs.feldera.com/api/...: input endpoint
// metrics).
type Metrics struct {
	// TotalBytes is the source bytes ingested (0 for datagen and Parquet).
	TotalBytes int64 `json:"total_bytes"`
	// TotalRecords is the records committed to the table store.
	TotalRecords int64 `json:"total_records"`
	// BufferedRecords is the records read but not yet committed.
	BufferedRecords int64 `json:"buffered_records"`
	// NumTransportErrors counts transient source errors that were retried.
	NumTransportErrors int64 `json:"num_transport_errors"`
	// NumParseErrors counts malformed records skipped.
	NumParseErrors int64 `json:"num_parse_errors"`
	// EndOfInput is true once the source has no more records.
	EndOfInput bool `json:"end_of_input"`
}

// MaxParseErrors is how many of the latest parse errors are kept.
const MaxParseErrors = 10

// Progress is a connector's durable position and counters: the Ingest
// activity's heartbeat details and its result.
type Progress struct {
	// Checkpoint is the source position just past the last committed record.
	Checkpoint json.RawMessage `json:"checkpoint,omitempty"`
	// Commit is the connector's number of table commits (its Delta txn
	// version); it orders progress reports, the larger being the newer.
	Commit int64 `json:"commit"`
	// Metrics are the counters at Checkpoint.
	Metrics Metrics `json:"metrics"`
	// ParseErrors are the latest MaxParseErrors malformed records.
	ParseErrors []connectors.ParseError `json:"parse_errors,omitempty"`
	// Output holds an output connector's counters (Deliver's progress);
	// nil for inputs. An output's Checkpoint is {"version": V}, the table
	// version its destination holds, Commit is V+1, and
	// Metrics.EndOfInput says it delivered every version there will be.
	Output *OutputMetrics `json:"output,omitempty"`
}

// Observer sees the progress of every connector that runs on a worker
// (Activities.Observer), for monitoring: the metrics package exports it
// to Prometheus. Ingest and Deliver call Observe at every heartbeat
// (about once a second, from the activity's heartbeat goroutine), with
// the progress they heartbeat, and once more with their final progress
// when they return (finished, paused or failed), after which that
// activation calls it no more. Calls come from many activities'
// goroutines at once: Observe must be safe for concurrent use, fast, and
// must not block. p and what it points to are valid only during the
// call: copy what you keep.
type Observer interface {
	// Observe reports connector's progress in table of pipeline; p.Output
	// is non-nil for an output connector.
	Observe(pipeline, table, connector string, p Progress)
}

// OutputMetrics are an output connector's counters, cumulative over
// every activation, with Feldera's output endpoint metric names
// (https://docs.feldera.com/api/...: output endpoint metrics), and its
// lag behind the table.
type OutputMetrics struct {
	// TransmittedRecords is the changes committed to the destination.
	TransmittedRecords int64 `json:"transmitted_records"`
	// TransmittedBytes is the bytes sent, for sinks that count them.
	TransmittedBytes int64 `json:"transmitted_bytes"`
	// BufferedRecords is the changes written but not yet committed.
	BufferedRecords int64 `json:"buffered_records"`
	// NumEncodeErrors counts changes the sink could not encode.
	NumEncodeErrors int64 `json:"num_encode_errors"`
	// NumTransportErrors counts failed attempts that were retried.
	NumTransportErrors int64 `json:"num_transport_errors"`
	// TotalProcessedInputRecords is the changes read from the table.
	TotalProcessedInputRecords int64 `json:"total_processed_input_records"`
	// DeliveredVersion is the table version the destination holds (-1:
	// none); TableVersion the newest the output has seen.
	DeliveredVersion int64 `json:"delivered_version"`
	TableVersion     int64 `json:"table_version"`
	// LagSeconds is how long ago the oldest undelivered version was
	// committed to the table (0 when the output is caught up).
	LagSeconds float64 `json:"lag_seconds"`
	// Guarantee is the sink's delivery guarantee: exactly_once or
	// at_least_once.
	Guarantee connectors.Guarantee `json:"guarantee"`
}

// IngestInput is the Ingest activity's input.
type IngestInput struct {
	// Pipeline names the pipeline (and the table store's directory).
	Pipeline string `json:"pipeline"`
	// Table is the table, for its name and columns.
	Table pipeline.Table `json:"table"`
	// Connector is the connector to run, as declared.
	Connector pipeline.Connector `json:"connector"`
	// Progress is the newest progress the workflow knows of.
	Progress Progress `json:"progress"`
	// TableRef is the table's Delta table as the workflow recorded it;
	// empty in histories from before table identities.
	TableRef TableRef `json:"table_ref,omitzero"`
	// Writer is the identity the input commits under (pipeline.Writer);
	// empty means the connector's name.
	Writer string `json:"writer,omitempty"`
}

// writer returns the identity the input commits under.
func (in IngestInput) writer() string {
	if in.Writer != "" {
		return in.Writer
	}
	return in.Connector.Name
}

// DeliverInput is the Deliver activity's input.
type DeliverInput struct {
	IngestInput
	// Finish makes the output deliver every version the table has, then
	// return with Metrics.EndOfInput: the workflow sets it once every
	// input connector of the pipeline has finished (stop_at_end_of_input).
	Finish bool `json:"finish,omitempty"`
}

// TableRef identifies a table's Delta table: its metaData.id and its
// location (store.Location).
type TableRef struct {
	ID       string `json:"id,omitempty"`
	Location string `json:"location,omitempty"`
}

// OpenTableInput is the OpenTable activity's input.
type OpenTableInput struct {
	// Pipeline names the pipeline.
	Pipeline string `json:"pipeline"`
	// Table is the table, for its name and columns.
	Table pipeline.Table `json:"table"`
}
