package kafka

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/connectors"
)

// Config is kafka_input's transport config. Field names are Feldera's
// (topic, start_from, partitions, ...) and librdkafka's for client
// properties (bootstrap.servers, enable.partition.eof, sasl.*, ssl.*);
// librdkafka properties take strings ("true") as well as JSON values.
type Config struct {
	// BootstrapServers is a comma-separated list of host:port brokers.
	BootstrapServers string `json:"bootstrap.servers"`
	// Topic is the topic to read.
	Topic string `json:"topic,omitempty"`
	// Topics lists several topics to read (an older Feldera form); give
	// Topic or Topics.
	Topics []string `json:"topics,omitempty"`
	// Partitions restricts reading to these partitions of every topic;
	// all partitions if empty, including those added to a topic while the
	// connector runs (read from their start; see DiscoverInterval).
	Partitions []int32 `json:"partitions,omitempty"`
	// StartFrom is where a connector that has no checkpoint starts:
	// "earliest", "latest" (the default), {"offsets": [o0, o1, ...]} (the
	// offset of partition i is o_i), or {"timestamp": ms} (the first
	// message at or after that time, in milliseconds since the epoch).
	// It is resolved to concrete offsets once, at first activation.
	StartFrom *StartFrom `json:"start_from,omitempty"`
	// AutoOffsetReset is librdkafka's name for StartFrom's "earliest" or
	// "latest" (also "smallest", "beginning", "largest", "end").
	AutoOffsetReset string `json:"auto.offset.reset,omitempty"`
	// Seek starts the listed partitions at exact offsets, overriding
	// StartFrom for them: [{"topic": "t", "partition": 0, "offset": 42}].
	Seek []Seek `json:"seek,omitempty"`
	// EnablePartitionEOF makes the connector reach end of input once every
	// partition has reached the end offset it had at first activation
	// (the high watermark, or with read_committed the last stable offset).
	// The partitions are those of first activation too: partitions added
	// later are not read.
	EnablePartitionEOF Flag `json:"enable.partition.eof,omitempty"`
	// IsolationLevel is "read_committed" (the default, as librdkafka's) or
	// "read_uncommitted".
	IsolationLevel string `json:"isolation.level,omitempty"`
	// ResumeEarliestIfDataExpires resumes at the start of a partition
	// whose checkpointed offset was deleted by retention; by default that
	// is a fatal error, since messages were lost.
	ResumeEarliestIfDataExpires bool `json:"resume_earliest_if_data_expires,omitempty"`

	// SecurityProtocol is plaintext (default), ssl, sasl_plaintext or sasl_ssl.
	SecurityProtocol string `json:"security.protocol,omitempty"`
	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	SASLMechanism string `json:"sasl.mechanism,omitempty"`
	// SASLMechanisms is librdkafka's older name for SASLMechanism.
	SASLMechanisms string `json:"sasl.mechanisms,omitempty"`
	// SASLUsername and SASLPassword are the SASL credentials; give the
	// password as "${env:NAME}" to keep it out of the pipeline.
	SASLUsername string `json:"sasl.username,omitempty"`
	SASLPassword string `json:"sasl.password,omitempty"`
	// SSLCALocation is a PEM file of CA certificates to trust.
	SSLCALocation string `json:"ssl.ca.location,omitempty"`
	// SSLCAPEM is PEM CA certificates inline.
	SSLCAPEM string `json:"ssl.ca.pem,omitempty"`
	// SSLCertificateLocation and SSLKeyLocation are PEM files of the
	// client's certificate and key, for mutual TLS.
	SSLCertificateLocation string `json:"ssl.certificate.location,omitempty"`
	SSLKeyLocation         string `json:"ssl.key.location,omitempty"`
	// EnableSSLCertificateVerification set to false skips verifying the
	// broker's certificate (tests only).
	EnableSSLCertificateVerification *Flag `json:"enable.ssl.certificate.verification,omitempty"`

	// GroupID is accepted and ignored: partitions are assigned explicitly
	// and offsets live in Sluice's checkpoint, not in a consumer group.
	GroupID string `json:"group.id,omitempty"`
	// LogLevel, GroupJoinTimeoutSecs and PollerThreads are Feldera
	// options accepted for compatibility; franz-go needs none of them.
	LogLevel             string `json:"log_level,omitempty"`
	GroupJoinTimeoutSecs int    `json:"group_join_timeout_secs,omitempty"`
	PollerThreads        int    `json:"poller_threads,omitempty"`
}

// StartFrom is Feldera's start_from: exactly one of its fields is set.
type StartFrom struct {
	Earliest  bool
	Latest    bool
	Offsets   []int64
	Timestamp *int64
}

// UnmarshalJSON reads "earliest", "latest", {"offsets": [...]} or
// {"timestamp": ms}.
func (s *StartFrom) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err == nil {
		switch name {
		case "earliest":
			s.Earliest = true
		case "latest":
			s.Latest = true
		default:
			return fmt.Errorf(`want "earliest", "latest", {"offsets": [...]} or {"timestamp": ms}, got %q`, name)
		}
		return nil
	}
	var v struct {
		Offsets   []int64 `json:"offsets"`
		Timestamp *int64  `json:"timestamp"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil || (v.Offsets == nil) == (v.Timestamp == nil) {
		return fmt.Errorf(`want "earliest", "latest", {"offsets": [...]} or {"timestamp": ms}, got %s`, b)
	}
	s.Offsets, s.Timestamp = v.Offsets, v.Timestamp
	return nil
}

// MarshalJSON writes the form UnmarshalJSON reads.
func (s StartFrom) MarshalJSON() ([]byte, error) {
	switch {
	case s.Earliest:
		return []byte(`"earliest"`), nil
	case s.Offsets != nil:
		return json.Marshal(map[string][]int64{"offsets": s.Offsets})
	case s.Timestamp != nil:
		return json.Marshal(map[string]int64{"timestamp": *s.Timestamp})
	}
	return []byte(`"latest"`), nil
}

// Seek is one partition's exact starting offset.
type Seek struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// Flag is a boolean given as JSON true/false or as librdkafka's strings
// "true"/"false".
type Flag bool

// UnmarshalJSON accepts true, false, "true" and "false".
func (f *Flag) UnmarshalJSON(b []byte) error {
	switch strings.Trim(string(b), `"`) {
	case "true":
		*f = true
	case "false":
		*f = false
	default:
		return fmt.Errorf("want true or false, got %s", b)
	}
	return nil
}

// ParseConfig decodes and validates a kafka_input config, applying
// defaults; every problem is reported at once with its field.
func ParseConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if err := decode(raw, &c); err != nil {
		return c, err
	}
	return c, c.Validate()
}

func decode(raw json.RawMessage, c *Config) error {
	err := connectors.DecodeConfig("transport", raw, c)
	var fe *connectors.FieldError
	if errors.As(err, &fe) && fe.Field == "" {
		// encoding/json does not say which field a custom type rejected:
		// decode those fields alone to name it.
		var fields map[string]json.RawMessage
		_ = json.Unmarshal(raw, &fields)
		for _, f := range []struct {
			name string
			v    any
		}{{"start_from", new(StartFrom)}, {"enable.partition.eof", new(Flag)}, {"enable.ssl.certificate.verification", new(Flag)}} {
			if v, ok := fields[f.name]; ok {
				if ferr := json.Unmarshal(v, f.v); ferr != nil {
					fe.Field, fe.Err = f.name, ferr
				}
			}
		}
	}
	return err
}

// Validate reports every config problem at once, with its field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, connectors.TransportError(field, format, args...))
	}
	if strings.TrimSpace(c.BootstrapServers) == "" {
		bad("bootstrap.servers", "required: a comma-separated list of host:port")
	}
	switch {
	case c.Topic == "" && len(c.Topics) == 0:
		bad("topic", "required")
	case c.Topic != "" && len(c.Topics) > 0:
		bad("topics", "give topic or topics, not both")
	}
	for i, t := range c.Topics {
		if t == "" {
			bad(fmt.Sprintf("topics[%d]", i), "empty topic name")
		}
	}
	seen := map[int32]bool{}
	for i, p := range c.Partitions {
		if p < 0 || seen[p] {
			bad(fmt.Sprintf("partitions[%d]", i), "want distinct partition numbers >= 0, got %d", p)
		}
		seen[p] = true
	}
	if c.AutoOffsetReset != "" {
		var s StartFrom
		switch strings.ToLower(c.AutoOffsetReset) {
		case "earliest", "smallest", "beginning":
			s.Earliest = true
		case "latest", "largest", "end":
			s.Latest = true
		default:
			bad("auto.offset.reset", "want earliest or latest, got %q", c.AutoOffsetReset)
		}
		if c.StartFrom != nil {
			bad("auto.offset.reset", "give start_from or auto.offset.reset, not both")
		} else {
			c.StartFrom = &s
		}
	}
	if c.StartFrom == nil {
		c.StartFrom = &StartFrom{Latest: true}
	}
	if c.StartFrom.Offsets != nil {
		if len(c.TopicList()) > 1 {
			bad("start_from.offsets", "offsets index the partitions of one topic; with several topics use seek")
		}
		for i, o := range c.StartFrom.Offsets {
			if o < 0 {
				bad(fmt.Sprintf("start_from.offsets[%d]", i), "want an offset >= 0, got %d", o)
			}
		}
		for _, p := range c.Partitions {
			if int(p) >= len(c.StartFrom.Offsets) {
				bad("start_from.offsets", "no offset for partition %d (offsets[i] is partition i's)", p)
			}
		}
	}
	topics := map[string]bool{}
	for _, t := range c.TopicList() {
		topics[t] = true
	}
	for i, s := range c.Seek {
		switch {
		case !topics[s.Topic]:
			bad(fmt.Sprintf("seek[%d].topic", i), "%q is not a topic this connector reads", s.Topic)
		case s.Partition < 0 || s.Offset < 0:
			bad(fmt.Sprintf("seek[%d]", i), "want partition and offset >= 0")
		case len(c.Partitions) > 0 && !seen[s.Partition]:
			bad(fmt.Sprintf("seek[%d].partition", i), "partition %d is not in partitions", s.Partition)
		}
	}
	switch strings.ToLower(c.IsolationLevel) {
	case "", "read_committed", "read_uncommitted":
	default:
		bad("isolation.level", "want read_committed or read_uncommitted, got %q", c.IsolationLevel)
	}
	proto := strings.ToLower(c.SecurityProtocol)
	switch proto {
	case "", "plaintext", "ssl", "sasl_plaintext", "sasl_ssl":
	default:
		bad("security.protocol", "want plaintext, ssl, sasl_plaintext or sasl_ssl, got %q", c.SecurityProtocol)
	}
	mech := c.Mechanism()
	if strings.HasPrefix(proto, "sasl") {
		switch mech {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		case "":
			bad("sasl.mechanism", "required with security.protocol %s: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", proto)
		default:
			bad("sasl.mechanism", "want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got %q", mech)
		}
		if c.SASLUsername == "" {
			bad("sasl.username", "required with security.protocol %s", proto)
		}
	} else if mech != "" || c.SASLUsername != "" {
		bad("security.protocol", "sasl settings need security.protocol sasl_plaintext or sasl_ssl")
	}
	if (c.SSLCertificateLocation == "") != (c.SSLKeyLocation == "") {
		bad("ssl.key.location", "give ssl.certificate.location and ssl.key.location together")
	}
	return errors.Join(errs...)
}

// TopicList returns the topics to read.
func (c *Config) TopicList() []string {
	if c.Topic != "" {
		return []string{c.Topic}
	}
	return c.Topics
}

// Mechanism returns the SASL mechanism in upper case.
func (c *Config) Mechanism() string {
	if c.SASLMechanism != "" {
		return strings.ToUpper(c.SASLMechanism)
	}
	return strings.ToUpper(c.SASLMechanisms)
}
