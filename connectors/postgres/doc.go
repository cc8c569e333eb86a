// Package postgres is the postgres_output transport: it delivers a table's
// changes to a PostgreSQL table with pgx (github.com/jackc/pgx/v5),
// configured with Feldera's names (feldera-types transport/postgres.rs:
// uri, table, mode, cdc_op_column, cdc_ts_column and the ssl_* options).
//
// Every Commit is one database transaction: the changes stream into the
// destination with binary COPY (straight into the table in cdc mode; into a
// temporary table that one INSERT ... ON CONFLICT / DELETE ... USING
// statement merges in materialized mode), and the delivered table version
// is set in the _sluice_offsets row of the output, which the transaction
// locks first. A crash leaves both or neither, so the output is exactly
// once; a stale attempt of the same output finds the position moved and
// stops with ErrFenced.
//
// It is also the postgres_input transport (input.go,
// https://docs.feldera.com/connectors/sources/postgresql): the rows of a
// query read as a snapshot in one repeatable-read transaction through a
// server-side cursor, then end of input. With Sluice's key_columns the
// rows are read in key order and the checkpoint is the last key read, so a
// resumed read neither skips nor repeats a row (exactly once); without it
// the checkpoint counts rows and a resume skips that many (at least once,
// and only as good as the query's order is stable).
package postgres
