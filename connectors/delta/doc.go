// Package delta is the delta_table_input transport
// (https://docs.feldera.com/connectors/sources/delta): a Delta Lake table,
// local or on S3, read as the Delta transaction log protocol specifies
// (https://github.com/delta-io/delta/blob/master/PROTOCOL.md).
//
// The log reader is Sluice's own: no well-kept Go library reads the Delta
// log (delta-rs and the Delta kernels are Rust and Java; the Go ports are
// unmaintained). It replays JSON commits (_delta_log/NNNNNNNNNNNNNNNNNNNN.json)
// on top of the newest Parquet checkpoint at or before the wanted version
// (single- or multi-part, found through _delta_log/_last_checkpoint),
// reconciles add and remove actions by path, and reads the data files
// with arrow-go's Parquet reader. Partition columns come from each file's
// partitionValues; column mapping (name and id modes) reads columns by
// their physical names. Tables that require a reader feature Sluice does
// not implement (deletion vectors, v2 checkpoints, type widening, ...)
// are refused with an error that names the features.
//
// Modes follow Feldera: snapshot reads the table at one version and
// reaches end of input; follow ingests each new commit, rows of added
// files as inserts and rows of removed files as deletes; snapshot_and_follow
// does both, in that order. The checkpoint is the phase (snapshot or
// follow), the table version, the index of the data file within that
// version's ordered files and the row within the file (DESIGN.md §4).
package delta
