// Package url is the url_input transport
// (https://docs.feldera.com/connectors/sources/http-get): an HTTP GET of a
// URL, parsed with the connector's byte format (json or csv). It always
// reaches end of input at the end of the body.
//
// # Checkpoint and resume
//
// The checkpoint is {"offset": N, "etag": "...", "last_modified": "..."}:
// the byte offset just past the last whole record, and the document's
// validator, its strong ETag or, when it has none, its Last-Modified (weak
// ETags do not promise identical bytes and are not used). A checkpoint
// without a validator (written before they were recorded) still resumes;
// the document is then trusted not to have changed.
//
// A resumed connector asks for the rest with "Range: bytes=N-" and
// "If-Range: <validator>":
//
//   - 206 Partial Content: the rest of the same document; reading goes on.
//   - 200 OK with the same validator: the server ignores Range; the first
//     N bytes are read and skipped.
//   - 200 OK with another validator, or none: the document changed since
//     the checkpoint, and resuming at byte N would read the wrong records.
//     This is a fatal error that names the change; start the connector
//     from the beginning (a new connector) to read the new document.
//   - 416 Range Not Satisfiable with "Content-Range: bytes */N": the
//     checkpoint is at the end of the document (a backfill paused after its
//     last commit), which is end of input. Any other length there means the
//     document changed (fatal). When the 416 gives no length, a HEAD request
//     must confirm Content-Length N (and the validator) before it counts as
//     end of input; otherwise it is fatal, since an unconfirmed end could
//     silently drop the rest of the document.
//
// Responses are always asked for without compression (Accept-Encoding is
// not sent), so byte offsets and Range requests count the same bytes.
//
// # Errors and retries
//
// 5xx, 408, 425 and 429 responses, connection resets, timeouts and bodies
// that end early are transient. They are retried inside the source with
// exponential backoff, [Attempts] tries in all, waiting [FirstBackoff] and
// then twice as long each time (or longer when a 429 or 503 says
// Retry-After, up to 30s), giving up at once when the context ends. A body
// that breaks mid-way is asked for again from the byte just past the last
// byte handed to the parser (not the last committed record), with Range and
// If-Range as above, so no byte is read twice or skipped. Any bytes received
// reset the count. When the tries run out the error is returned as it is,
// not fatal: the activity is retried by Temporal from the committed
// checkpoint.
//
// Other 4xx responses (401, 403, 404, ...), a bad URL and certificate
// errors are fatal ([connectors.Fatal]). A refused connection or an unknown
// host is fatal on a connector's first Open (no checkpoint: most likely a
// wrong URL, the documented policy for refused connections) and transient
// once the server has been reached, or when resuming from a checkpoint (the
// server is likely restarting).
//
// # HTTP client
//
// Each Source has its own client, without an overall timeout (a body may
// stream for hours), but with [ConnectTimeout] to dial, [TLSHandshakeTimeout]
// for the TLS handshake, [ResponseHeaderTimeout] from sending the request to
// the response's headers, and [IdleConnTimeout] for kept-alive connections;
// TCP keep-alives detect a peer that vanished mid-body. Proxies come from
// HTTP_PROXY, HTTPS_PROXY and NO_PROXY. Redirects are followed (at most 10).
package url
