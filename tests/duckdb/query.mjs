// Runs one SQL query with DuckDB and prints its rows as JSON (an array of
// objects; BIGINT and DECIMAL values as strings). Used by the Go tests as
// a Parquet reader independent of arrow-go.
//
//   node query.mjs "select count(*) as n from 'x.parquet'"
import { DuckDBInstance } from '@duckdb/node-api';

const instance = await DuckDBInstance.create(':memory:');
const connection = await instance.connect();
const reader = await connection.runAndReadAll(process.argv[2]);
const rows = reader.getRowObjectsJson();
process.stdout.write(JSON.stringify(rows));
