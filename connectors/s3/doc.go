// Package s3 is the s3_input transport
// (https://docs.feldera.com/connectors/sources/s3): the objects of an S3
// bucket (one key, or every key under a prefix) read in key order with the
// connector's format (json, csv or parquet), through the AWS SDK for Go v2.
//
// The connector always reaches end of input: after the last object that
// matched when it first started. Its checkpoint is the object key and the
// position inside it (bytes for json and csv, rows for parquet), so a
// resumed connector neither skips nor re-reads an object.
//
// [Settings] (region, endpoint, credentials) is shared with the Delta Lake
// and Iceberg transports, which read s3:// tables through [Settings.Client]
// and [Object].
package s3
