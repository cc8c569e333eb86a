package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Pipeline is a whole program: a name and its tables.
//
// In YAML or JSON:
//
//	name: flights
//	stop_at_end_of_input: false
//	tables:
//	  - name: flights
//	    columns: [{name: delay, type: INT}]
//	    connectors: [{name: backfill, transport: {...}, format: {...}}]
type Pipeline struct {
	// Name identifies the pipeline; its workflow ID is "pipeline-<Name>".
	// Letters, digits, '-' and '_' only.
	Name string `json:"name"`
	// StopAtEndOfInput completes the pipeline's workflow once every input
	// connector has finished (end of input and nothing buffered).
	StopAtEndOfInput bool `json:"stop_at_end_of_input,omitempty"`
	// DeliveryGuarantee, if "exactly_once", refuses at load any
	// connector that cannot deliver exactly once across crashes (the
	// checker says which: connectors.Guaranteed); "at_least_once" or
	// empty accepts every connector. After LaminarDB's DeliveryGuarantee.
	DeliveryGuarantee string `json:"delivery_guarantee,omitempty"`
	// Tables are the pipeline's tables, in declaration order.
	Tables []Table `json:"tables"`
}

// Table is a named relation with typed columns and its input connectors.
type Table struct {
	Name string `json:"name"`
	// Columns in declaration order.
	Columns []Column `json:"columns"`
	// PrimaryKey names columns; optional.
	PrimaryKey []string `json:"primary_key,omitempty"`
	// Connectors are the table's input connectors.
	Connectors []Connector `json:"connectors,omitempty"`
}

// Column is one typed column. Type is a SQL type such as "BIGINT",
// "DECIMAL(15,2)" or "VARCHAR"; see [ArrowType] for the supported ones.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Nullable defaults to true, as in SQL; "NOT NULL" in DDL sets it false.
	Nullable *bool `json:"nullable,omitempty"`
}

// IsNullable reports whether the column accepts NULL (the default).
func (c Column) IsNullable() bool { return c.Nullable == nil || *c.Nullable }

// Connector is one input connector, exactly Feldera's connector JSON
// (https://docs.feldera.com/connectors/orchestration): a transport, an
// optional format, and the orchestration fields paused, labels and
// start_after.
type Connector struct {
	// Name is unique within its table; the connector's endpoint name is
	// "<table>.<name>".
	Name string `json:"name"`
	// Transport names the connector kind ("datagen", "file_input", ...) and
	// carries its config.
	Transport Transport `json:"transport"`
	// Format says how the transport's bytes parse into records; nil for
	// transports that produce typed records themselves (datagen).
	Format *Format `json:"format,omitempty"`
	// Paused creates the connector in the Paused state.
	Paused bool `json:"paused,omitempty"`
	// Labels tag the connector for other connectors' StartAfter.
	Labels []string `json:"labels,omitempty"`
	// StartAfter creates the connector Paused and starts it once every
	// connector carrying at least one of these labels has finished. In JSON
	// a string or a list of strings.
	StartAfter Labels `json:"start_after,omitempty"`
	// MaxQueuedRecords bounds the records read but not yet committed;
	// default 1,000,000 (Feldera's default).
	MaxQueuedRecords int `json:"max_queued_records,omitempty"`
	// MaxBatchSize bounds the records in one record batch read from the
	// source; default 10,000 (Feldera's default).
	MaxBatchSize int `json:"max_batch_size,omitempty"`
	// CommitIntervalMs is the least time between two table commits of a
	// live connector, in milliseconds, unless max_batch_size records
	// wait; default 1,000. Backfills commit by size.
	CommitIntervalMs int `json:"commit_interval_ms,omitempty"`
}

// IsOutput reports whether a transport name is an output connector's:
// Feldera's output transports end in "_output" (file_output,
// kafka_output, postgres_output, delta_table_output), its inputs in
// "_input" or are datagen.
func IsOutput(transport string) bool { return strings.HasSuffix(transport, "_output") }

// IsOutput reports whether the connector is an output connector.
func (c Connector) IsOutput() bool { return IsOutput(c.Transport.Name) }

// Defaults for [Connector] fields, as in Feldera.
const (
	DefaultMaxQueuedRecords = 1_000_000
	DefaultMaxBatchSize     = 10_000
)

// DefaultCommitInterval is [Connector.CommitIntervalMs]'s default.
const DefaultCommitInterval = time.Second

// CommitInterval returns CommitIntervalMs or its default.
func (c Connector) CommitInterval() time.Duration {
	if c.CommitIntervalMs > 0 {
		return time.Duration(c.CommitIntervalMs) * time.Millisecond
	}
	return DefaultCommitInterval
}

// QueueLimit returns MaxQueuedRecords or its default.
func (c Connector) QueueLimit() int {
	if c.MaxQueuedRecords > 0 {
		return c.MaxQueuedRecords
	}
	return DefaultMaxQueuedRecords
}

// BatchLimit returns MaxBatchSize or its default, capped by QueueLimit.
func (c Connector) BatchLimit() int {
	n := DefaultMaxBatchSize
	if c.MaxBatchSize > 0 {
		n = c.MaxBatchSize
	}
	return min(n, c.QueueLimit())
}

// Transport is Feldera's {"name": ..., "config": {...}}.
type Transport struct {
	Name   string          `json:"name"`
	Config json.RawMessage `json:"config,omitempty"`
}

// Format is Feldera's {"name": ..., "config": {...}}.
type Format struct {
	Name   string          `json:"name"`
	Config json.RawMessage `json:"config,omitempty"`
}

// Labels is a list of labels that also unmarshals from a single string, as
// Feldera's start_after does.
type Labels []string

// UnmarshalJSON accepts "label" or ["a", "b"].
func (l *Labels) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*l = Labels{s}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("start_after: want a string or a list of strings")
	}
	*l = list
	return nil
}

// Endpoint returns the endpoint name "table.connector" used in stats and
// signals.
func Endpoint(table, connector string) string { return table + "." + connector }

// Writer is the identity under which an input connector commits to its
// table: its Delta txn appId is "<table>.<writer>" and the table keeps
// its checkpoint under it (store.AppID, store.Domain). It is the
// connector's name, followed by "@<run>" in a scheduled run and by
// "#<generation>" once the connector was reset or given a checkpoint
// (sluice connector ... reset|set-checkpoint). A new writer starts from
// the checkpoint it is given, not from what the table holds of an older
// one; names use letters, digits, '-' and '_' only, so the parts cannot
// be confused.
func Writer(connector, run string, generation int) string {
	w := connector
	if run != "" {
		w += "@" + run
	}
	if generation > 0 {
		w += fmt.Sprintf("#%d", generation)
	}
	return w
}

// Table returns the table with the given name, matched case-insensitively
// as SQL does, or nil.
func (p *Pipeline) Table(name string) *Table {
	for i := range p.Tables {
		if strings.EqualFold(p.Tables[i].Name, name) {
			return &p.Tables[i]
		}
	}
	return nil
}

// Connector returns the named connector of the table, or nil.
func (t *Table) Connector(name string) *Connector {
	for i := range t.Connectors {
		if t.Connectors[i].Name == name {
			return &t.Connectors[i]
		}
	}
	return nil
}

// WorkflowID is the ID of the pipeline's workflow: "pipeline-<name>".
func WorkflowID(name string) string { return "pipeline-" + name }
