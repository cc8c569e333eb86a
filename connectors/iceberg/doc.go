// Package iceberg is the iceberg_input transport
// (https://docs.feldera.com/connectors/sources/iceberg): an Apache
// Iceberg table, found through a catalog (REST or SQL) or a metadata
// file, read with github.com/apache/iceberg-go and arrow-go.
//
// Modes are Feldera's: snapshot reads one snapshot (snapshot_id, datetime
// or the current one) and reaches end of input after its last row;
// follow ingests the changes of every snapshot committed after the start
// snapshot; snapshot_and_follow reads the snapshot, then follows. A
// followed snapshot's changes are found by planning it and its parent
// (Iceberg spec, "Scan Planning") and comparing their data files and the
// delete files that apply to each: rows of added files enter with weight
// +1, rows of removed files (overwrites, copy-on-write deletes) leave
// with weight -1, and rows that new delete files remove leave with -1.
// Comparing planned files rather than manifest entry status also handles
// format v1 overwrites, whose new files can be EXISTING. Snapshots of
// operation replace change no rows and are skipped. end_snapshot_id ends
// input once that snapshot is ingested; the follow modes poll the
// catalog (or the metadata directory's version hint) every PollInterval.
//
// iceberg-go plans each snapshot: its live data files and, for each, the
// position delete files (data sequence number <= the delete's) and
// equality delete files (data sequence number < the delete's, sequence
// numbers inherited from the manifest list) that apply. Sluice reads
// the planned Parquet data files one after another, sorted by path, and
// applies the deletes itself: position deletes (Iceberg spec, "Position
// Delete Files") by the row's position in its file, equality deletes
// ("Equality Delete Files") by comparing the row's equality_ids columns,
// NULL equal to NULL, with the delete rows. So the checkpoint can be the
// snapshot id, the phase (snapshot or follow), the index of the data file
// and the rows of it read (counted before deletes), and a resumed
// connector neither skips nor re-reads a row. Deletion vectors (format
// v3) are refused by name rather than read with deleted rows.
//
// Columns are matched by Iceberg field id (by name in files written
// without ids), so a renamed column reads from files written before the
// rename, a column added later reads as NULL from older files, and
// promoted types (int to long, float to double, decimal precision) are
// cast to the table column's type (Iceberg spec, "Schema Evolution").
package iceberg
