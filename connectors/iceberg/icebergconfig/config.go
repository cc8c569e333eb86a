// Package icebergconfig is iceberg_input's config: its fields, their
// validation and whether the connector reaches end of input. It is apart
// from package iceberg, which reads tables with iceberg-go, so that
// validating a pipeline (the sluice command line) does not link
// iceberg-go, whose package initialization (its Substrait extension
// catalogue) takes about 90 ms and 32 MB at every start of a program
// that links it.
package icebergconfig

import (
	"errors"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/predicate"
	"github.com/sluicehq/sluice/connectors/s3"
)

// Config is Feldera's iceberg_input config (its REST catalog options,
// plus a SQL catalog and allow_moved_paths), with [s3.Settings] for
// s3:// locations.
type Config struct {
	s3.Settings
	// Mode is snapshot (read one snapshot, then end of input), follow
	// (ingest the changes of every snapshot committed after the start
	// snapshot, in parent-chain order) or snapshot_and_follow (read the
	// snapshot, then follow).
	Mode string `json:"mode"`
	// MetadataLocation reads the table without a catalog: a
	// *.metadata.json file, or a table directory whose
	// metadata/version-hint.text (or, without one, newest
	// *.metadata.json) names the current metadata.
	MetadataLocation string `json:"metadata_location,omitempty"`
	// CatalogType is rest or sql; TableName is then "namespace.table".
	CatalogType string `json:"catalog_type,omitempty"`
	TableName   string `json:"table_name,omitempty"`
	// REST catalog options (the Iceberg REST catalog's property names
	// after the "rest." prefix).
	RestURI             string `json:"rest.uri,omitempty"`
	RestWarehouse       string `json:"rest.warehouse,omitempty"`
	RestCredential      string `json:"rest.credential,omitempty"`
	RestToken           string `json:"rest.token,omitempty"`
	RestPrefix          string `json:"rest.prefix,omitempty"`
	RestScope           string `json:"rest.scope,omitempty"`
	RestOAuth2ServerURI string `json:"rest.oauth2-server-uri,omitempty"`
	// SQL catalog options (iceberg-go's catalog/sql, the JDBC catalog's
	// tables): the database URI, its Go driver (pgx, mysql or sqlite) and
	// dialect (postgres, mysql or sqlite; default from the driver), and
	// the catalog's name in its tables (default "default").
	SQLURI      string `json:"sql.uri,omitempty"`
	SQLDriver   string `json:"sql.driver,omitempty"`
	SQLDialect  string `json:"sql.dialect,omitempty"`
	CatalogName string `json:"catalog_name,omitempty"`
	// SnapshotID reads this snapshot; Datetime the one current at that
	// time (RFC 3339, or "2006-01-02 15:04:05" in UTC). Default: the
	// table's current snapshot when the connector first starts. In
	// follow mode, the connector follows the snapshots after it.
	SnapshotID *int64 `json:"snapshot_id,omitempty"`
	Datetime   string `json:"datetime,omitempty"`
	// EndSnapshotID is, in the follow modes, the last snapshot ingested:
	// once its changes (or, if it is the start snapshot, the snapshot
	// itself) have been read, the connector reaches end of input. It
	// must be a snapshot of the table descending from the start (else a
	// fatal error when the start is resolved or a checkpoint opened), on
	// the history that the current snapshot follows (else a fatal error
	// when following reaches the fork).
	EndSnapshotID *int64 `json:"end_snapshot_id,omitempty"`
	// SnapshotFilter keeps only rows of the snapshot (not of followed
	// changes) for which this SQL predicate holds.
	SnapshotFilter string `json:"snapshot_filter,omitempty"`
	// TimestampColumn is Feldera's option to read the snapshot in time
	// order; Sluice does not implement it yet and says so.
	TimestampColumn string `json:"timestamp_column,omitempty"`
	// AllowMovedPaths reads a table whose files moved since it was
	// written (DuckDB's iceberg_scan option of the same name): every path
	// under the metadata's location is read under the directory that
	// holds the metadata directory instead.
	AllowMovedPaths bool `json:"allow_moved_paths,omitempty"`
}

// Modes of [Config.Mode] (Feldera's iceberg_input names).
const (
	ModeSnapshot          = "snapshot"
	ModeFollow            = "follow"
	ModeSnapshotAndFollow = "snapshot_and_follow"
)

// Dialects maps the Go database/sql driver names of the SQL catalog
// (sql.driver) to their default dialect (sql.dialect).
var Dialects = map[string]string{"pgx": "postgres", "postgres": "postgres", "mysql": "mysql", "sqlite": "sqlite"}

// Check decodes and validates p's transport config without I/O, as
// iceberg.New does before it builds the source: unknown fields, a
// format (iceberg_input reads typed columns) and every problem of
// [Config.Validate] are errors, each a connectors.FieldError with its
// path. It is the connectors.Check of iceberg_input.
func Check(p connectors.Params) (*Config, error) {
	var cfg Config
	if err := connectors.DecodeConfig("transport", p.Config, &cfg); err != nil {
		return nil, err
	}
	if p.Format != nil {
		return nil, &connectors.FieldError{Section: "format", Field: "name", Err: errors.New("iceberg_input reads typed columns and takes no format")}
	}
	if err := cfg.Validate(p.Schema); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Bounded reports whether the connector reaches end of input: in
// snapshot mode, and in the follow modes with end_snapshot_id.
func (c *Config) Bounded() bool { return c.Mode == ModeSnapshot || c.EndSnapshotID != nil }

// Validate reports every problem at once, with paths relative to the
// transport config.
func (c *Config) Validate(schema *arrow.Schema) error {
	errs := []error{c.Settings.Validate()}
	switch c.Mode {
	case ModeSnapshot, ModeFollow, ModeSnapshotAndFollow:
	case "":
		errs = append(errs, connectors.TransportError("mode", "required: snapshot, follow or snapshot_and_follow"))
	default:
		errs = append(errs, connectors.TransportError("mode", "want snapshot, follow or snapshot_and_follow, got %q", c.Mode))
	}
	if c.EndSnapshotID != nil && c.Mode == ModeSnapshot {
		errs = append(errs, connectors.TransportError("end_snapshot_id", "only for modes that follow (snapshot mode ends after the snapshot)"))
	}
	if c.SnapshotFilter != "" && c.Mode == ModeFollow {
		errs = append(errs, connectors.TransportError("snapshot_filter", "mode follow reads no snapshot"))
	}
	switch {
	case c.MetadataLocation == "" && c.CatalogType == "":
		errs = append(errs, connectors.TransportError("metadata_location", "set metadata_location, or catalog_type and table_name"))
	case c.MetadataLocation != "" && c.CatalogType != "":
		errs = append(errs, connectors.TransportError("catalog_type", "set metadata_location or catalog_type, not both"))
	case c.CatalogType != "":
		if c.TableName == "" || !strings.Contains(c.TableName, ".") {
			errs = append(errs, connectors.TransportError("table_name", "want namespace.table, got %q", c.TableName))
		}
		switch c.CatalogType {
		case "rest":
			if c.RestURI == "" {
				errs = append(errs, connectors.TransportError("rest.uri", "required for catalog_type rest"))
			}
		case "sql":
			if c.SQLURI == "" {
				errs = append(errs, connectors.TransportError("sql.uri", "required for catalog_type sql"))
			}
			if Dialects[c.SQLDriver] == "" {
				errs = append(errs, connectors.TransportError("sql.driver", "want pgx, mysql or sqlite, got %q", c.SQLDriver))
			}
			if c.SQLDialect != "" && c.SQLDialect != "postgres" && c.SQLDialect != "mysql" && c.SQLDialect != "sqlite" {
				errs = append(errs, connectors.TransportError("sql.dialect", "want postgres, mysql or sqlite, got %q", c.SQLDialect))
			}
		case "glue":
			errs = append(errs, connectors.TransportError("catalog_type", "glue is not supported yet; use rest, sql or metadata_location"))
		default:
			errs = append(errs, connectors.TransportError("catalog_type", "want rest or sql, got %q", c.CatalogType))
		}
	}
	if c.SnapshotID != nil && c.Datetime != "" {
		errs = append(errs, connectors.TransportError("datetime", "set snapshot_id or datetime, not both"))
	}
	if c.Datetime != "" {
		if _, err := connectors.ParseDatetime(c.Datetime); err != nil {
			errs = append(errs, connectors.TransportError("datetime", "%v", err))
		}
	}
	if c.SnapshotFilter != "" {
		if _, err := predicate.Parse(c.SnapshotFilter, schema); err != nil {
			errs = append(errs, connectors.TransportError("snapshot_filter", "%v", err))
		}
	}
	if c.TimestampColumn != "" {
		errs = append(errs, connectors.TransportError("timestamp_column", "not supported yet by iceberg_input"))
	}
	return errors.Join(errs...)
}
