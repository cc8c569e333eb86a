// Package delta is the Delta Lake transaction log
// (https://github.com/delta-io/delta/blob/master/PROTOCOL.md): reading
// tables at a version, writing commits, and writing log checkpoints, on
// a local directory or an S3 prefix ([Storage]). The table store (package
// store) writes every Sluice table with it, and delta_table_input
// (connectors/delta) reads any Delta table with it.
//
// No maintained Go library reads and writes the Delta log (delta-rs and
// the Delta kernels are Rust and Java; the Go ports are unmaintained), so
// this code is Sluice's own, tested against tables written by Spark and
// Delta Lake (../shared/data/delta) and read back by DuckDB.
//
// Reading ([LoadSnapshot]) replays the JSON commits
// (_delta_log/NNNNNNNNNNNNNNNNNNNN.json) on top of the newest Parquet
// checkpoint at or before the wanted version (single- or multi-part,
// found through _delta_log/_last_checkpoint), reconciling add and remove
// actions by path, txn actions by application id and domain metadata by
// domain (PROTOCOL.md, "Action Reconciliation"). [LoadLatest] does the
// same without listing the log, so that its cost depends on the commits
// since the last checkpoint, not on the table's age. Tables that need a
// reader feature this package does not implement (v2 checkpoints, type
// widening, ...) are refused with an error naming them.
//
// Deletion vectors (PROTOCOL.md, "Deletion Vectors"): add and remove
// actions carry a [DeletionVector] descriptor, files are reconciled by
// (path, deletion vector id), and [ReadDeletionVector] reads the set of
// deleted row positions from a deletion vector file (relative "u" or
// absolute "p") or from the log itself (inline "i"), checking its size,
// magic number, CRC-32 and cardinality.
//
// Writing: [WriteCommit] puts a version's actions put-if-absent (link(2)
// locally, a conditional PutObject on S3), which is the mutual exclusion
// the protocol requires of concurrent writers; [WriteParquet] streams a
// data file with its add statistics; [WriteCheckpoint] writes a
// single-part Parquet checkpoint and _last_checkpoint.
package delta
