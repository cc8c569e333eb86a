package delta

import (
	"errors"
	"net/url"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/predicate"
	"github.com/sluicehq/sluice/connectors/s3"
)

// Modes of delta_table_input (Feldera's names).
const (
	ModeSnapshot          = "snapshot"
	ModeFollow            = "follow"
	ModeSnapshotAndFollow = "snapshot_and_follow"
)

// Config is Feldera's delta_table_input config, plus [s3.Settings] for
// s3:// URIs and start_version.
type Config struct {
	s3.Settings
	// URI is the table root: a local path, file:///path or
	// s3://bucket/prefix.
	URI string `json:"uri"`
	// Mode is snapshot, follow or snapshot_and_follow (required).
	Mode string `json:"mode"`
	// Version pins the snapshot to a table version. In follow mode, the
	// connector follows the commits after it.
	Version *int64 `json:"version,omitempty"`
	// Datetime pins the snapshot to the newest version committed at or
	// before it: RFC 3339 ("2024-01-02T15:04:05Z") or "2024-01-02 15:04:05"
	// (UTC). Exclusive with Version.
	Datetime string `json:"datetime,omitempty"`
	// StartVersion is, in follow mode, the first version whose changes are
	// ingested. Without it (and without Version or Datetime), follow mode
	// starts after the newest version at the connector's first start.
	StartVersion *int64 `json:"start_version,omitempty"`
	// EndVersion is the last version followed: after it the connector
	// reaches end of input.
	EndVersion *int64 `json:"end_version,omitempty"`
	// Filter keeps only the rows for which this SQL predicate is true, in
	// the snapshot and in followed changes ("distance > 1000 AND origin =
	// 'SFO'"; see predicate's grammar in the README).
	Filter string `json:"filter,omitempty"`
	// SnapshotFilter is a predicate applied to the snapshot only.
	SnapshotFilter string `json:"snapshot_filter,omitempty"`
	// TimestampColumn orders the snapshot: data files are read in order of
	// their smallest value of this column (from the add action's stats or
	// the partition value; files without either come first, by path).
	TimestampColumn string `json:"timestamp_column,omitempty"`
	// NumParsers, SkipUnusedColumns and TransactionMode are accepted for
	// compatibility with Feldera and ignored.
	NumParsers        int    `json:"num_parsers,omitempty"`
	SkipUnusedColumns bool   `json:"skip_unused_columns,omitempty"`
	TransactionMode   string `json:"transaction_mode,omitempty"`
}

// Validate reports every problem with the config at once, with paths
// relative to the transport config. schema is the table's.
func (c *Config) Validate(schema *arrow.Schema) error {
	errs := []error{c.Settings.Validate()}
	if c.URI == "" {
		errs = append(errs, connectors.TransportError("uri", "required"))
	} else if u, err := url.Parse(c.URI); err == nil && u.Scheme != "" && u.Scheme != "s3" && u.Scheme != "file" && len(u.Scheme) > 1 {
		errs = append(errs, connectors.TransportError("uri", "want a local path, file:// or s3://, got %q", c.URI))
	}
	switch c.Mode {
	case ModeSnapshot, ModeFollow, ModeSnapshotAndFollow:
	case "":
		errs = append(errs, connectors.TransportError("mode", "required: snapshot, follow or snapshot_and_follow"))
	default:
		errs = append(errs, connectors.TransportError("mode", "want snapshot, follow or snapshot_and_follow, got %q", c.Mode))
	}
	if c.Version != nil && c.Datetime != "" {
		errs = append(errs, connectors.TransportError("datetime", "set version or datetime, not both"))
	}
	if c.Version != nil && *c.Version < 0 {
		errs = append(errs, connectors.TransportError("version", "must not be negative"))
	}
	if c.Datetime != "" {
		if _, err := connectors.ParseDatetime(c.Datetime); err != nil {
			errs = append(errs, connectors.TransportError("datetime", "%v", err))
		}
	}
	if c.StartVersion != nil {
		switch {
		case c.Mode != ModeFollow:
			errs = append(errs, connectors.TransportError("start_version", "only for mode follow (snapshot_and_follow follows from the snapshot's version)"))
		case c.Version != nil || c.Datetime != "":
			errs = append(errs, connectors.TransportError("start_version", "set start_version or version/datetime, not both"))
		case *c.StartVersion < 0:
			errs = append(errs, connectors.TransportError("start_version", "must not be negative"))
		}
	}
	if c.EndVersion != nil {
		switch {
		case c.Mode == ModeSnapshot:
			errs = append(errs, connectors.TransportError("end_version", "only for modes that follow (snapshot mode ends after the snapshot)"))
		case c.StartVersion != nil && *c.EndVersion < *c.StartVersion:
			errs = append(errs, connectors.TransportError("end_version", "%d is before start_version %d", *c.EndVersion, *c.StartVersion))
		case c.Version != nil && *c.EndVersion < *c.Version:
			errs = append(errs, connectors.TransportError("end_version", "%d is before version %d", *c.EndVersion, *c.Version))
		}
	}
	if c.Filter != "" {
		if _, err := predicate.Parse(c.Filter, schema); err != nil {
			errs = append(errs, connectors.TransportError("filter", "%v", err))
		}
	}
	if c.SnapshotFilter != "" {
		if c.Mode == ModeFollow {
			errs = append(errs, connectors.TransportError("snapshot_filter", "mode follow reads no snapshot"))
		} else if _, err := predicate.Parse(c.SnapshotFilter, schema); err != nil {
			errs = append(errs, connectors.TransportError("snapshot_filter", "%v", err))
		}
	}
	if c.TimestampColumn != "" {
		idx := schema.FieldIndices(c.TimestampColumn)
		if len(idx) == 0 {
			errs = append(errs, connectors.TransportError("timestamp_column", "the table has no column %q", c.TimestampColumn))
		} else if t := schema.Field(idx[0]).Type; !arrow.IsInteger(t.ID()) && !arrow.IsFloating(t.ID()) && t.ID() != arrow.TIMESTAMP && t.ID() != arrow.DATE32 {
			errs = append(errs, connectors.TransportError("timestamp_column", "column %s is %s; want a TIMESTAMP, DATE or number", c.TimestampColumn, t))
		}
	}
	return errors.Join(errs...)
}
