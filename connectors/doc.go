// Package connectors is the contract between Sluice's ingestion loop and its
// transports: [Source] (what an input connector implements), [Batch] (a
// record batch plus the checkpoint just past it), [Params] (what a transport
// is built from) and [Registry] (transport name -> factory).
//
// The lifecycle follows Conduit's connector SDK and Benthos' inputs:
// New (validate config, no I/O) -> Open(ctx, checkpoint) (reach the source,
// check credentials, seek) -> Read until [ErrEndOfInput] or the context ends
// -> Close. One goroutine drives a Source; its methods are not called
// concurrently.
//
// One package per transport: connectors/datagen, connectors/file,
// connectors/url. Formats (bytes -> Arrow) are in connectors/format, the
// table store (every table's Delta table) in the top-level store package.
package connectors
