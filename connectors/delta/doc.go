// Package delta is the delta_table_input transport
// (https://docs.feldera.com/connectors/sources/delta): a Delta Lake table,
// local or on S3, read as the Delta transaction log protocol specifies
// (https://github.com/delta-io/delta/blob/master/PROTOCOL.md).
//
// The log is read with Sluice's own Delta log package (the top-level
// delta package, shared with the table store), and the data files with
// arrow-go's Parquet reader. Partition columns come from each file's
// partitionValues; column mapping (name and id modes) reads columns by
// their physical names. Tables that require a reader feature Sluice does
// not implement (v2 checkpoints, type widening, ...) are refused with an
// error that names the features.
//
// Deletion vectors (PROTOCOL.md, "Deletion Vectors"; inline, relative and
// absolute) are honored: a file's rows at the positions its vector
// deletes are not read. In follow mode, a commit that replaces a file's
// vector (a remove and an add of the same path) emits a delete only for
// each row the new vector deletes and the old one did not (and an insert
// for each row it restores), not the file's other rows; removing a file
// deletes only its rows not yet deleted.
//
// Modes follow Feldera: snapshot reads the table at one version and
// reaches end of input; follow ingests each new commit, rows of added
// files as inserts and rows of removed files as deletes; snapshot_and_follow
// does both, in that order. The checkpoint is the phase (snapshot or
// follow), the table version, the index of the data file within that
// version's ordered files and the row within the file (DESIGN.md §4),
// counted in the Parquet file, deleted rows included.
//
// A table Sluice wrote (its schema has the long column _weight) is read
// with each row's own weight, so that its deletes stay deletes.
package delta
