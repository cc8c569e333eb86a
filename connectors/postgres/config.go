package postgres

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/sluicehq/sluice/connectors"
)

// The write modes (Feldera's PostgresWriteMode).
const (
	// ModeMaterialized keeps the table equal to Sluice's table: +1 upserts
	// by primary key, -1 deletes by primary key.
	ModeMaterialized = "materialized"
	// ModeCDC appends every change with an operation and a timestamp
	// column.
	ModeCDC = "cdc"
)

// The default names of the cdc mode's columns (Feldera's).
const (
	DefaultOpColumn = "__feldera_op"
	DefaultTSColumn = "__feldera_ts"
)

// Config is postgres_output's transport config, with Feldera's field names
// (feldera-types transport/postgres.rs, PostgresWriterConfig and
// PostgresTlsConfig).
type Config struct {
	// URI is the connection string, postgres://user:password@host:port/db
	// or key=value form (pgx's ParseConfig); give the password as
	// ${env:NAME}.
	URI string `json:"uri"`
	// Table is the destination table's name, matched exactly (Feldera
	// quotes it); "schema.table" names a table of another schema when no
	// table is named with the dot.
	Table string `json:"table"`
	// Mode is "materialized" (the default) or "cdc".
	Mode string `json:"mode,omitempty"`
	// CDCOpColumn names the cdc mode's operation column ('i' or 'd');
	// __feldera_op by default.
	CDCOpColumn string `json:"cdc_op_column,omitempty"`
	// CDCTSColumn names the cdc mode's timestamp column: the commit time of
	// the table version the change belongs to; __feldera_ts by default.
	CDCTSColumn string `json:"cdc_ts_column,omitempty"`

	// TLSOptions are the ssl_* options and verify_hostname.
	TLSOptions

	// MaxRecordsInBuffer, MaxBufferSizeBytes and Threads are Feldera's
	// tuning options, accepted for compatibility: rows stream into COPY.
	MaxRecordsInBuffer *int `json:"max_records_in_buffer,omitempty"`
	MaxBufferSizeBytes *int `json:"max_buffer_size_bytes,omitempty"`
	Threads            *int `json:"threads,omitempty"`
	// OnConflictDoNothing is Feldera's option; only false (the default)
	// is supported, since an insert that left the old row would break
	// exactly-once equality with the table.
	OnConflictDoNothing bool `json:"on_conflict_do_nothing,omitempty"`
}

// TLSOptions are the TLS options postgres_output and postgres_input share,
// with Feldera's names (feldera-types transport/postgres.rs,
// PostgresTlsConfig). Setting a CA (ssl_ca_pem or ssl_ca_location) turns
// TLS on; without one the connection follows the URI's sslmode.
type TLSOptions struct {
	// SSLCAPEM is a sequence of CA certificates in PEM format; setting it
	// (or SSLCALocation) turns TLS on.
	SSLCAPEM string `json:"ssl_ca_pem,omitempty"`
	// SSLCALocation is a file of CA certificates in PEM format.
	SSLCALocation string `json:"ssl_ca_location,omitempty"`
	// SSLClientPEM is the client certificate in PEM format, for mutual TLS.
	SSLClientPEM string `json:"ssl_client_pem,omitempty"`
	// SSLClientLocation is a file holding the client certificate.
	SSLClientLocation string `json:"ssl_client_location,omitempty"`
	// SSLClientKey is the client certificate's key in PEM format.
	SSLClientKey string `json:"ssl_client_key,omitempty"`
	// SSLClientKeyLocation is a file holding the client certificate's key.
	SSLClientKeyLocation string `json:"ssl_client_key_location,omitempty"`
	// SSLCertificateChainLocation is a file with the client's certificate
	// chain (leaf first); used in place of SSLClientPEM/SSLClientLocation.
	SSLCertificateChainLocation string `json:"ssl_certificate_chain_location,omitempty"`
	// VerifyHostname set to false checks the server's certificate chain
	// but not that it names the host. True by default.
	VerifyHostname *bool `json:"verify_hostname,omitempty"`
}

// ParseConfig decodes and validates a postgres_output config, applying
// defaults; every problem is reported at once with its field. pk is the
// table's primary key, required by the materialized mode.
func ParseConfig(raw json.RawMessage, pk []string) (Config, error) {
	var c Config
	if err := connectors.DecodeConfig("transport", raw, &c); err != nil {
		return c, err
	}
	return c, c.Validate(pk)
}

// Validate applies defaults and reports every config problem at once, with
// its field.
func (c *Config) Validate(pk []string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, connectors.TransportError(field, format, args...))
	}
	if strings.TrimSpace(c.URI) == "" {
		bad("uri", "required: postgres://user:password@host:port/database")
	}
	if strings.TrimSpace(c.Table) == "" {
		bad("table", "required")
	}
	if c.Mode == "" {
		c.Mode = ModeMaterialized
	}
	switch c.Mode {
	case ModeMaterialized:
		if c.CDCOpColumn != "" && c.CDCOpColumn != DefaultOpColumn {
			bad("cdc_op_column", "only with mode cdc")
		}
		if c.CDCTSColumn != "" && c.CDCTSColumn != DefaultTSColumn {
			bad("cdc_ts_column", "only with mode cdc")
		}
		if len(pk) == 0 {
			bad("mode", "materialized needs the table's primary_key (or use mode cdc)")
		}
	case ModeCDC:
		if c.OnConflictDoNothing {
			bad("on_conflict_do_nothing", "not supported with mode cdc, which only appends")
		}
	default:
		bad("mode", "want materialized or cdc, got %q", c.Mode)
	}
	if c.OnConflictDoNothing && c.Mode == ModeMaterialized {
		bad("on_conflict_do_nothing", "not supported: an insert must replace the row of its key for the destination to equal the table")
	}
	if c.CDCOpColumn == "" {
		c.CDCOpColumn = DefaultOpColumn
	}
	if c.CDCTSColumn == "" {
		c.CDCTSColumn = DefaultTSColumn
	}
	if c.Mode == ModeCDC && c.CDCOpColumn == c.CDCTSColumn {
		bad("cdc_ts_column", "must differ from cdc_op_column")
	}
	if c.Threads != nil && *c.Threads < 1 {
		bad("threads", "must be at least 1")
	}
	errs = append(errs, c.TLSOptions.validate()...)
	return errors.Join(errs...)
}

// validate reports the TLS options' problems, with their fields.
func (c *TLSOptions) validate() []error {
	var errs []error
	if (c.SSLClientPEM != "" || c.SSLClientLocation != "" || c.SSLCertificateChainLocation != "") !=
		(c.SSLClientKey != "" || c.SSLClientKeyLocation != "") {
		errs = append(errs, connectors.TransportError("ssl_client_key", "give the client certificate (ssl_client_pem or ssl_client_location) and its key (ssl_client_key or ssl_client_key_location) together"))
	}
	if c.SSLCAPEM != "" && !strings.Contains(c.SSLCAPEM, "env-NAME") {
		if !x509.NewCertPool().AppendCertsFromPEM([]byte(c.SSLCAPEM)) {
			errs = append(errs, connectors.TransportError("ssl_ca_pem", "no PEM certificate found"))
		}
	}
	return errs
}

// hasTLS reports whether the config asks for TLS (Feldera: a CA is given).
func (c *TLSOptions) hasTLS() bool { return c.SSLCAPEM != "" || c.SSLCALocation != "" }

// tlsConfig builds the TLS config for host from the ssl_* options, or nil
// when none asks for TLS. File errors are config errors.
func (c *TLSOptions) tlsConfig(host string) (*tls.Config, error) {
	if !c.hasTLS() {
		if c.SSLClientPEM != "" || c.SSLClientLocation != "" || c.SSLCertificateChainLocation != "" {
			return nil, connectors.TransportError("ssl_ca_pem", "client certificates need ssl_ca_pem or ssl_ca_location, which turn TLS on")
		}
		return nil, nil
	}
	read := func(field, inline, path string) ([]byte, error) {
		if inline != "" {
			return []byte(inline), nil
		}
		if path == "" {
			return nil, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, connectors.TransportError(field, "%v", err)
		}
		return b, nil
	}
	ca, err := read("ssl_ca_location", c.SSLCAPEM, c.SSLCALocation)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return nil, connectors.TransportError("ssl_ca_pem", "no PEM certificate found")
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	tc := &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12}
	certPath := c.SSLClientLocation
	if certPath == "" {
		certPath = c.SSLCertificateChainLocation
	}
	cert, err := read("ssl_client_location", c.SSLClientPEM, certPath)
	if err != nil {
		return nil, err
	}
	if cert != nil {
		key, err := read("ssl_client_key_location", c.SSLClientKey, c.SSLClientKeyLocation)
		if err != nil {
			return nil, err
		}
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return nil, connectors.TransportError("ssl_client_key", "client certificate and key: %v", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	if c.VerifyHostname != nil && !*c.VerifyHostname {
		// Verify the chain against the CAs, not the name (Feldera's
		// verify_hostname: false).
		tc.InsecureSkipVerify = true
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("server sent no certificate")
			}
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				cert, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs[i] = cert
			}
			inter := x509.NewCertPool()
			for _, cert := range certs[1:] {
				inter.AddCert(cert)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			if err != nil {
				return fmt.Errorf("verify server certificate: %w", err)
			}
			return nil
		}
	}
	return tc, nil
}
