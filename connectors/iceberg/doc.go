// Package iceberg is the iceberg_input transport
// (https://docs.feldera.com/connectors/sources/iceberg): one snapshot of an
// Apache Iceberg table, found through a catalog (REST or SQL) or a
// metadata file, read with github.com/apache/iceberg-go, and reaching end
// of input after the snapshot's last row.
//
// iceberg-go loads the metadata, picks the snapshot (snapshot_id, datetime
// or the current one) and plans the scan from its manifests; Sluice reads
// the planned Parquet data files one after another with arrow-go, so that
// its checkpoint can be the snapshot id, the index of the data file (in
// path order) and the row within it, and a resumed connector neither skips
// nor re-reads a row. Columns are matched by Iceberg field id (by name in
// files written without ids), so a renamed column reads from files
// written before the rename. Tables whose scan needs delete files (position or
// equality deletes, deletion vectors) are refused with a clear error
// rather than read with deleted rows.
package iceberg
