// Package format turns bytes into Arrow record batches in a table's change
// schema, with Feldera's formats (https://docs.feldera.com/formats/):
// json (update_format raw or insert_delete; array true/false, else
// newline-delimited), csv (delimiter, headers) and parquet.
//
// Byte formats implement [Parser]: Split finds record boundaries so a
// byte offset between records is an exact checkpoint, and Parse converts
// complete records, skipping and reporting malformed ones. [Stream] drives a
// Parser over an io.Reader. Parquet is read by [ParquetReader], since it
// needs random access.
package format
