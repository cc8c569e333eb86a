package pubsub

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/connectors"
)

// Config is pub_sub_input's transport config, with Feldera's field names
// (feldera-types transport/pubsub.rs, PubSubInputConfig; see
// https://docs.feldera.com/connectors/sources/pubsub) and Sluice's
// exactly_once_delivery.
type Config struct {
	// Subscription is the subscription to read, its ID ("orders-sluice")
	// or its full name ("projects/P/subscriptions/S"). Required.
	Subscription string `json:"subscription"`
	// ProjectID is the Google Cloud project of the subscription (and
	// snapshot). Empty, it comes from a full subscription name, else from
	// the credentials.
	ProjectID string `json:"project_id,omitempty"`
	// Credentials is the content of a Google Cloud credentials JSON file
	// (a service account key, say); give it as ${env:NAME} so that it
	// stays out of the pipeline file, logs and workflow history. Empty,
	// Application Default Credentials are used
	// (https://cloud.google.com/docs/authentication/provide-credentials-adc).
	Credentials string `json:"credentials,omitempty"`
	// Emulator is the host:port of a Pub/Sub emulator (or of pstest): no
	// TLS, no authentication.
	Emulator string `json:"emulator,omitempty"`
	// Endpoint overrides the service's endpoint, pubsub.googleapis.com:443
	// (a regional endpoint, say).
	Endpoint string `json:"endpoint,omitempty"`
	// PoolSize is the number of gRPC connections, and of streaming pulls
	// reading the subscription at once; 1 by default.
	PoolSize *int `json:"pool_size,omitempty"`
	// TimeoutSeconds bounds each administrative request (reading the
	// subscription, Seek); 30 by default. Pulling is a stream and has no
	// timeout.
	TimeoutSeconds *int `json:"timeout_seconds,omitempty"`
	// ConnectTimeoutSeconds bounds how long Open waits to reach the
	// service; 30 by default.
	ConnectTimeoutSeconds *int `json:"connect_timeout_seconds,omitempty"`
	// Snapshot, the name or full name of a Pub/Sub snapshot, rewinds the
	// subscription's backlog to it (Seek) at the connector's first
	// activation, once. Excludes Timestamp.
	Snapshot string `json:"snapshot,omitempty"`
	// Timestamp, an ISO 8601 time ("2024-08-17T16:39:57-08:00"), sets the
	// subscription's backlog to the messages published from then on (a
	// Seek: earlier ones count as acknowledged, later ones as not) at the
	// connector's first activation, once. Excludes Snapshot.
	Timestamp string `json:"timestamp,omitempty"`
	// ExactlyOnceDelivery says the subscription has exactly-once delivery
	// enabled, which Open then checks (a fatal error if not): the
	// connector is then exactly once (connectors.ExactlyOnce); without
	// this option it declares at least once, whatever the subscription.
	ExactlyOnceDelivery bool `json:"exactly_once_delivery,omitempty"`
}

// The defaults of [Config]'s optional numbers.
const (
	DefaultTimeout        = 30 * time.Second
	DefaultConnectTimeout = 30 * time.Second
)

// ParseConfig decodes and validates a pub_sub_input config, reporting
// every problem at once with its field ("transport.config.subscription:
// required"). It does no I/O.
func ParseConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if err := connectors.DecodeConfig("transport", raw, &c); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate reports every config problem at once, with its field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, connectors.TransportError(field, format, args...))
	}
	c.Subscription = strings.TrimSpace(c.Subscription)
	switch project, _, full := splitName(c.Subscription, "subscriptions"); {
	case c.Subscription == "":
		bad("subscription", "required: the subscription's ID or projects/PROJECT/subscriptions/ID")
	case strings.HasPrefix(c.Subscription, "projects/") && !full:
		bad("subscription", "%q: want projects/PROJECT/subscriptions/ID or an ID", c.Subscription)
	case full && c.ProjectID != "" && project != c.ProjectID:
		bad("project_id", "%q differs from the subscription's project %q", c.ProjectID, project)
	}
	if c.Snapshot != "" && c.Timestamp != "" {
		bad("timestamp", "excludes snapshot: give one of them")
	}
	if c.Snapshot != "" {
		if _, _, full := splitName(c.Snapshot, "snapshots"); strings.HasPrefix(c.Snapshot, "projects/") && !full {
			bad("snapshot", "%q: want projects/PROJECT/snapshots/ID or an ID", c.Snapshot)
		}
	}
	if c.Timestamp != "" {
		if _, err := c.seekTime(); err != nil {
			bad("timestamp", "%q: want an ISO 8601 time such as 2024-08-17T16:39:57-08:00", c.Timestamp)
		}
	}
	// At load the value is usually a ${env:NAME} (masked): only an inline
	// object is checked here, the rest when Open reads it.
	if strings.HasPrefix(strings.TrimSpace(c.Credentials), "{") && !json.Valid([]byte(c.Credentials)) {
		// Never the value: it is a secret.
		bad("credentials", "not JSON: give the content of a credentials JSON file, as ${env:NAME}")
	}
	if c.Emulator != "" && c.Endpoint != "" {
		bad("endpoint", "excludes emulator: give one of them")
	}
	for field, v := range map[string]*int{"pool_size": c.PoolSize, "timeout_seconds": c.TimeoutSeconds, "connect_timeout_seconds": c.ConnectTimeoutSeconds} {
		if v != nil && *v < 1 {
			bad(field, "%d: must be at least 1", *v)
		}
	}
	return errors.Join(errs...)
}

// splitName splits "projects/P/<kind>/ID" into P and ID; full is false
// for anything else (an ID).
func splitName(name, kind string) (project, id string, full bool) {
	parts := strings.Split(name, "/")
	if len(parts) == 4 && parts[0] == "projects" && parts[2] == kind && parts[1] != "" && parts[3] != "" {
		return parts[1], parts[3], true
	}
	return "", name, false
}

// seekTime parses Timestamp: RFC 3339 (ISO 8601) or the forms of
// connectors.ParseDatetime.
func (c *Config) seekTime() (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, c.Timestamp); err == nil {
		return t, nil
	}
	return connectors.ParseDatetime(c.Timestamp)
}

// project is the project to give the client: project_id, the
// subscription's, or "" to detect it from the credentials.
func (c *Config) project() string {
	if p, _, full := splitName(c.Subscription, "subscriptions"); full {
		return p
	}
	return c.ProjectID
}

// fullName returns name ("ID" or "projects/P/<kind>/ID") in full form in
// project.
func fullName(name, kind, project string) string {
	if _, _, full := splitName(name, kind); full {
		return name
	}
	return fmt.Sprintf("projects/%s/%s/%s", project, kind, name)
}

func seconds(v *int, def time.Duration) time.Duration {
	if v == nil {
		return def
	}
	return time.Duration(*v) * time.Second
}
