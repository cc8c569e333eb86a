// Package activities holds Sluice's Temporal activities. [Activities.Ingest]
// runs one input connector for as long as it is active: it opens the
// source at the newest durable checkpoint, reads record batches into a
// bounded queue, commits them to the table store together with the
// checkpoint, and heartbeats {checkpoint, metrics} about once a second.
// Records never pass through workflow history.
package activities
