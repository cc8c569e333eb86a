// Package pubsub is the pub_sub_input transport (alias pubsub_input): it
// reads a Google Cloud Pub/Sub subscription with streaming pull, through
// cloud.google.com/go/pubsub/v2, configured with Feldera's names
// (https://docs.feldera.com/connectors/sources/pubsub).
//
// Feldera acknowledges each message as it is received and has no fault
// tolerance for Pub/Sub. Sluice acknowledges a message only after the
// table store has committed it (the Ingest activity calls
// [Source.Committed] after each commit), so a crash before the commit
// gets it redelivered; and the checkpoint committed with the records
// lists the IDs of the messages not yet known to be acknowledged, so that
// a redelivery after a crash between the commit and the acknowledgement
// is recognised and dropped. With the subscription's exactly-once
// delivery (https://cloud.google.com/pubsub/docs/exactly-once-delivery),
// whose acknowledgements are confirmed, that is exactly once; without it
// an acknowledgement can be lost silently and the connector is at least
// once.
//
// A snapshot or timestamp option seeks the subscription once, at the
// connector's first activation (Resolve), as kafka_input resolves
// "latest". The connector never reaches end of input; a pause stops
// receiving, commits what was received and acknowledges it.
package pubsub
