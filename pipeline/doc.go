// Package pipeline is Sluice's program model: a pipeline declares tables, each
// with typed columns and input connectors whose objects are exactly Feldera's
// connector JSON (https://docs.feldera.com/connectors/).
//
// A pipeline is loaded from YAML, JSON or Feldera-style SQL DDL with [LoadFile]
// or [Load], and validated with [Validate] before anything starts: every
// problem is reported at once, each prefixed with its path, for example
//
//	tables[0].connectors[1].start_after: no connector has label "backfil"
//
// Column types are SQL types; [Table.Schema] maps them to an Arrow schema.
package pipeline
