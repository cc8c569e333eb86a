package url

import (
	"net"
	"net/http"
	"time"
)

// Timeouts of the HTTP client (see the package doc). There is no overall
// timeout: a body may stream for as long as it takes.
const (
	// ConnectTimeout bounds dialing the server's TCP connection.
	ConnectTimeout = 10 * time.Second
	// TLSHandshakeTimeout bounds the TLS handshake of an https:// URL.
	TLSHandshakeTimeout = 10 * time.Second
	// ResponseHeaderTimeout bounds the wait for the response's headers
	// once the request is sent.
	ResponseHeaderTimeout = 60 * time.Second
	// IdleConnTimeout closes a kept-alive connection idle this long.
	IdleConnTimeout = 90 * time.Second
)

// newClient returns the client of one Source.
func newClient() *http.Client {
	dialer := &net.Dialer{Timeout: ConnectTimeout, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   TLSHandshakeTimeout,
		ResponseHeaderTimeout: ResponseHeaderTimeout,
		IdleConnTimeout:       IdleConnTimeout,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          4,
		ForceAttemptHTTP2:     true,
		// Byte offsets count the identity encoding; a gzipped response
		// would have other bytes (and, often, another ETag).
		DisableCompression: true,
	}}
}
