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
package postgres
