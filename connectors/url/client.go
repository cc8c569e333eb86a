package url

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"syscall"
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

// Retries of transient failures (see the package doc).
const (
	// Attempts is how many times one request (or one broken body) is
	// tried before the failure is returned.
	Attempts = 5
	// FirstBackoff is the wait after the first failure; each further
	// failure doubles it.
	FirstBackoff = 200 * time.Millisecond
	// maxRetryAfter caps a server's Retry-After.
	maxRetryAfter = 30 * time.Second
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

// transientStatus says whether retrying the request may get another answer.
func transientStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return code >= 500 && code <= 599
}

// retryAfter parses a Retry-After header (seconds or an HTTP date), capped
// at maxRetryAfter; 0 if absent or malformed.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// fatalDialError says whether a failed request cannot succeed by retrying:
// a certificate the client refuses, or (when refuseFatal) a refused
// connection or an unknown host.
func fatalDialError(err error, refuseFatal bool) bool {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
		dns              *net.DNSError
	)
	switch {
	case errors.As(err, &unknownAuthority), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verification):
		return true
	case !refuseFatal:
		return false
	case errors.Is(err, syscall.ECONNREFUSED):
		return true
	case errors.As(err, &dns):
		return dns.IsNotFound
	}
	return false
}

// requestError strips the *url.Error around a client error: messages
// already name the URL.
func requestError(err error) error {
	var u *neturl.Error
	if errors.As(err, &u) {
		return u.Err
	}
	return err
}

// contentRange parses a Content-Range header, "bytes first-last/total" or
// "bytes */total"; total is -1 when it is "*", first is -1 for "*/total".
func contentRange(v string) (first, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, size, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	total = -1
	if size != "*" {
		n, err := strconv.ParseInt(size, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, false
		}
		total = n
	}
	if rng == "*" {
		return -1, total, total >= 0
	}
	a, _, found := strings.Cut(rng, "-")
	n, err := strconv.ParseInt(a, 10, 64)
	if !found || err != nil || n < 0 {
		return 0, 0, false
	}
	return n, total, true
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// describe quotes a header value for a message, or says it is missing.
func describe(v string) string {
	if v == "" {
		return "none"
	}
	return fmt.Sprintf("%q", v)
}
