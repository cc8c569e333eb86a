// Times one SQL statement with DuckDB: runs it `runs` times in one
// in-memory database and prints the fastest run in milliseconds. The
// benchmark (tests/bench) uses it for DuckDB's own COPY ... TO Parquet.
//
//   node time.mjs 3 "copy (select ...) to 'x.parquet' (format parquet)"
import { DuckDBInstance } from '@duckdb/node-api';

const instance = await DuckDBInstance.create(':memory:');
const connection = await instance.connect();
const runs = Number(process.argv[2]);
let best = Infinity;
for (let i = 0; i < runs; i++) {
  const start = process.hrtime.bigint();
  await connection.run(process.argv[3]);
  best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e6);
}
process.stdout.write(String(best));
