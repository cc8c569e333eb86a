// Package format turns bytes into Arrow record batches in a table's change
// schema, with Feldera's formats (https://docs.feldera.com/formats/):
// json (update_format raw, insert_delete or debezium; array true/false,
// else newline-delimited), csv (delimiter, headers) and parquet.
//
// Byte formats implement [Parser]: Split finds record boundaries so a
// byte offset between records is an exact checkpoint, and Parse converts
// complete records, skipping and reporting malformed ones. [Stream] drives a
// Parser over an io.Reader; [ParseMessage] parses one message of a
// message-oriented source (Kafka), each message a document of its own.
// Parquet is read by [ParquetReader], since it needs random access.
//
// Bad bytes are parse errors, never fatal, and never reach a table:
//
//   - Text must be UTF-8: a json record with invalid UTF-8 anywhere, or a
//     csv record with invalid UTF-8 in a VARCHAR column's field, is
//     skipped, unless the format option replace_invalid_utf8 is true: the
//     bad bytes are then read as U+FFFD. (csv VARBINARY fields take their
//     bytes as they are.)
//   - A record longer than the format option max_record_bytes (default
//     16 MiB, [DefaultMaxRecordBytes]) is skipped; a Stream discards its
//     bytes as they arrive, holding at most about max_record_bytes plus
//     1 MiB, and its checkpoint offset moves past them.
//   - In csv, a quote opens a quoted field only at the start of a field;
//     a quoted field that is still open at the end of input, or after
//     max_record_bytes, ends its record at the record's first newline,
//     and reading goes on with the next line.
//   - A DECIMAL value is [+-]digits[.digits][e[+-]digits] of at most 1000
//     characters with an exponent within ±1000 (1e1000000 is rejected at
//     once rather than costing seconds of big-number arithmetic).
//
// max_record_bytes and replace_invalid_utf8 are Sluice's own options
// ([RecordOptions]); Feldera's configs are accepted as they are.
package format
