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
