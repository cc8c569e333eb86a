package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/format"
	"github.com/sluicehq/sluice/pipeline"
)

// VersionHeader is the header kafka_output puts on every message: the
// table version (decimal) of the change the message carries. Open reads
// it back from the last committed messages of the topic to find the
// delivered position.
const VersionHeader = "sluice-version"

// TableHeader is the header kafka_output puts on every message beside
// VersionHeader: the id of the table (connectors.SinkParams.TableID)
// whose version that is, checked at Open.
const TableHeader = "sluice-table"

// OutputConfig is kafka_output's transport config, with Feldera's names
// (topic, headers, initialization_timeout_secs, ...) and librdkafka's for
// the client properties (bootstrap.servers, security.protocol, sasl.*,
// ssl.*, as kafka_input reads them, and a few producer properties).
type OutputConfig struct {
	// BootstrapServers is a comma-separated list of host:port brokers.
	BootstrapServers string `json:"bootstrap.servers"`
	// Topic is the topic to write; it must exist.
	Topic string `json:"topic"`
	// Headers are added to every message, before VersionHeader.
	Headers []Header `json:"headers,omitempty"`
	// InitializationTimeoutSecs bounds how long Open waits for the
	// brokers; ConnectTimeout if zero.
	InitializationTimeoutSecs int `json:"initialization_timeout_secs,omitempty"`

	// CompressionType is librdkafka's compression.type: none, gzip,
	// snappy, lz4 or zstd (franz-go's default, snappy, if empty).
	CompressionType string `json:"compression.type,omitempty"`
	// LingerMS is librdkafka's linger.ms: how long a batch waits for
	// more messages before it is sent.
	LingerMS json.Number `json:"linger.ms,omitempty"`
	// TransactionTimeoutMS is librdkafka's transaction.timeout.ms: the
	// brokers abort a transaction left open longer (a crashed worker's).
	TransactionTimeoutMS json.Number `json:"transaction.timeout.ms,omitempty"`
	// ClientID is librdkafka's client.id ("sluice" if empty).
	ClientID string `json:"client.id,omitempty"`

	// The security settings are kafka_input's; see [Config].
	SecurityProtocol                 string `json:"security.protocol,omitempty"`
	SASLMechanism                    string `json:"sasl.mechanism,omitempty"`
	SASLMechanisms                   string `json:"sasl.mechanisms,omitempty"`
	SASLUsername                     string `json:"sasl.username,omitempty"`
	SASLPassword                     string `json:"sasl.password,omitempty"`
	SSLCALocation                    string `json:"ssl.ca.location,omitempty"`
	SSLCAPEM                         string `json:"ssl.ca.pem,omitempty"`
	SSLCertificateLocation           string `json:"ssl.certificate.location,omitempty"`
	SSLKeyLocation                   string `json:"ssl.key.location,omitempty"`
	EnableSSLCertificateVerification *Flag  `json:"enable.ssl.certificate.verification,omitempty"`

	// LogLevel and FaultTolerance are Feldera options accepted for
	// compatibility: kafka_output is always transactional (exactly once).
	LogLevel       string          `json:"log_level,omitempty"`
	FaultTolerance json.RawMessage `json:"fault_tolerance,omitempty"`
}

// Header is a static message header: Feldera's {"key": ..., "value": ...}
// where value is a string, an array of bytes or null.
type Header struct {
	Key   string       `json:"key"`
	Value *HeaderValue `json:"value,omitempty"`
}

// HeaderValue is a header's bytes, given as a JSON string or an array of
// byte values.
type HeaderValue []byte

// UnmarshalJSON accepts "text" or [1, 2, 3].
func (h *HeaderValue) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*h = []byte(s)
		return nil
	}
	var bs []byte
	var ints []uint8
	if err := json.Unmarshal(b, &ints); err != nil {
		return fmt.Errorf("want a string or an array of bytes, got %s", b)
	}
	bs = append(bs, ints...)
	*h = bs
	return nil
}

// inputConfig is the kafka_input Config with the same brokers and
// security settings, to reuse its validation and client options.
func (c *OutputConfig) inputConfig() Config {
	return Config{
		BootstrapServers: c.BootstrapServers, Topic: c.Topic,
		SecurityProtocol: c.SecurityProtocol, SASLMechanism: c.SASLMechanism, SASLMechanisms: c.SASLMechanisms,
		SASLUsername: c.SASLUsername, SASLPassword: c.SASLPassword,
		SSLCALocation: c.SSLCALocation, SSLCAPEM: c.SSLCAPEM,
		SSLCertificateLocation: c.SSLCertificateLocation, SSLKeyLocation: c.SSLKeyLocation,
		EnableSSLCertificateVerification: c.EnableSSLCertificateVerification,
	}
}

// ParseOutputConfig decodes and validates a kafka_output config; every
// problem is reported at once with its field.
func ParseOutputConfig(raw json.RawMessage) (OutputConfig, error) {
	var c OutputConfig
	err := connectors.DecodeConfig("transport", raw, &c)
	var fe *connectors.FieldError
	if errors.As(err, &fe) && fe.Field == "" {
		var fields map[string]json.RawMessage
		_ = json.Unmarshal(raw, &fields)
		if v, ok := fields["headers"]; ok {
			if herr := json.Unmarshal(v, new([]Header)); herr != nil {
				fe.Field, fe.Err = "headers", herr
			}
		}
		if v, ok := fields["enable.ssl.certificate.verification"]; ok {
			if ferr := json.Unmarshal(v, new(Flag)); ferr != nil {
				fe.Field, fe.Err = "enable.ssl.certificate.verification", ferr
			}
		}
	}
	if err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate reports every config problem at once, with its field.
func (c *OutputConfig) Validate() error {
	in := c.inputConfig()
	errs := []error{in.Validate()} // bootstrap.servers, topic, security
	bad := func(field, format string, args ...any) {
		errs = append(errs, connectors.TransportError(field, format, args...))
	}
	for i, h := range c.Headers {
		if h.Key == "" {
			bad(fmt.Sprintf("headers[%d].key", i), "required")
		}
		if h.Key == VersionHeader {
			bad(fmt.Sprintf("headers[%d].key", i), "%s is kafka_output's own header", VersionHeader)
		}
	}
	if c.InitializationTimeoutSecs < 0 {
		bad("initialization_timeout_secs", "want >= 0, got %d", c.InitializationTimeoutSecs)
	}
	if _, err := c.compression(); err != nil {
		bad("compression.type", "%v", err)
	}
	for _, n := range []struct {
		field string
		v     json.Number
	}{{"linger.ms", c.LingerMS}, {"transaction.timeout.ms", c.TransactionTimeoutMS}} {
		if n.v == "" {
			continue
		}
		if ms, err := n.v.Int64(); err != nil || ms < 0 {
			bad(n.field, "want milliseconds >= 0, got %s", n.v)
		}
	}
	return errors.Join(errs...)
}

func (c *OutputConfig) compression() ([]kgo.CompressionCodec, error) {
	switch strings.ToLower(c.CompressionType) {
	case "":
		return nil, nil
	case "none":
		return []kgo.CompressionCodec{kgo.NoCompression()}, nil
	case "gzip":
		return []kgo.CompressionCodec{kgo.GzipCompression()}, nil
	case "snappy":
		return []kgo.CompressionCodec{kgo.SnappyCompression()}, nil
	case "lz4":
		return []kgo.CompressionCodec{kgo.Lz4Compression()}, nil
	case "zstd":
		return []kgo.CompressionCodec{kgo.ZstdCompression()}, nil
	}
	return nil, fmt.Errorf("want none, gzip, snappy, lz4 or zstd, got %q", c.CompressionType)
}

// TransactionalID is the Kafka transactional id of an output:
// sluice-<pipeline>-<table>-<connector>. A producer that starts with it
// fences (and aborts the open transaction of) any earlier producer with
// the same id, such as a crashed worker's.
func TransactionalID(pipeline, table, connector string) string {
	return "sluice-" + pipeline + "-" + table + "-" + connector
}

// Output is the kafka_output sink: a transactional producer that writes
// one message per change (the value encoded with the connector's format,
// the key the primary key columns as a JSON object when the table has a
// primary key) and commits one Kafka transaction per Commit. Every
// message carries VersionHeader and TableHeader, so the delivered
// position is read back from the topic itself. Its methods are called from one goroutine.
type Output struct {
	p         connectors.SinkParams
	cfg       OutputConfig
	in        *Source        // kafka_input's client options and error classification
	enc       format.Encoder // message values
	keyEnc    format.Encoder // message keys, nil without a primary key
	keySchema *arrow.Schema  // the key columns and a weight column
	key       []int          // the primary key's column indexes
	cl        *kgo.Client
	inTxn     bool

	headers []kgo.RecordHeader // static headers
	mu      sync.Mutex
	sendErr error // the first failed produce of the open transaction

	bytes, encodeErrors atomic.Int64
}

// NewOutput builds a kafka_output sink from p; nothing is contacted until
// Open. Config errors are connectors.FieldErrors.
func NewOutput(p connectors.SinkParams) (connectors.Sink, error) {
	cfg, err := ParseOutputConfig(p.Config)
	enc, eerr := format.NewEncoder(p.Format, p.Schema)
	var kerrs []error
	var key []int
	for _, k := range p.PrimaryKey {
		i := p.Schema.FieldIndices(k)
		if len(i) != 1 {
			kerrs = append(kerrs, fmt.Errorf("primary key column %q is not in the table", k))
			continue
		}
		key = append(key, i[0])
	}
	if err := errors.Join(append([]error{err, eerr}, kerrs...)...); err != nil {
		return nil, err
	}
	keyEnc, keySchema, err := newKeyEncoder(p, key)
	if err != nil {
		return nil, err
	}
	o := &Output{p: p, cfg: cfg, enc: enc, keyEnc: keyEnc, keySchema: keySchema, key: key}
	in := cfg.inputConfig()
	o.in = &Source{cfg: in}
	for _, h := range cfg.Headers {
		var v []byte
		if h.Value != nil {
			v = *h.Value
		}
		o.headers = append(o.headers, kgo.RecordHeader{Key: h.Key, Value: v})
	}
	return o, nil
}

// Guarantee is exactly once: the data and the position commit in one
// Kafka transaction.
func (o *Output) Guarantee() connectors.Guarantee { return connectors.ExactlyOnce }

// Transmitted returns the bytes of message values sent and the changes
// that could not be encoded.
func (o *Output) Transmitted() (bytes int64, encodeErrors int64) {
	return o.bytes.Load(), o.encodeErrors.Load()
}

func (o *Output) timeout() time.Duration {
	if o.cfg.InitializationTimeoutSecs > 0 {
		return time.Duration(o.cfg.InitializationTimeoutSecs) * time.Second
	}
	return ConnectTimeout
}

// Open connects a transactional producer with the id TransactionalID
// (fencing an earlier producer with that id and resolving its open
// transaction), checks the topic, and returns the largest VersionHeader
// among the last committed messages of the topic's partitions, or -1.
// Unreachable brokers, refused credentials, a missing topic and a
// position whose TableHeader names another table
// (connectors.SinkParams.CheckTableID) are fatal.
func (o *Output) Open(ctx context.Context) (int64, error) {
	base, err := o.in.clientOpts()
	if err != nil {
		return -1, err
	}
	opts := append(base[:len(base):len(base)],
		kgo.TransactionalID(TransactionalID(o.p.Pipeline, o.p.Table, o.p.Connector)),
		kgo.DefaultProduceTopic(o.cfg.Topic),
		kgo.RecordRetries(math.MaxInt32), // a transaction fails as a whole, never with holes
	)
	if o.cfg.ClientID != "" {
		opts = append(opts, kgo.ClientID(o.cfg.ClientID))
	}
	if codecs, _ := o.cfg.compression(); codecs != nil {
		opts = append(opts, kgo.ProducerBatchCompression(codecs...))
	}
	if ms, err := o.cfg.LingerMS.Int64(); err == nil {
		opts = append(opts, kgo.ProducerLinger(time.Duration(ms)*time.Millisecond))
	}
	if ms, err := o.cfg.TransactionTimeoutMS.Int64(); err == nil && ms > 0 {
		opts = append(opts, kgo.TransactionTimeout(time.Duration(ms)*time.Millisecond))
	}
	if o.cl, err = kgo.NewClient(opts...); err != nil {
		return -1, connectors.Fatal(err)
	}
	octx, cancel := context.WithTimeout(ctx, o.timeout())
	defer cancel()
	adm := kadm.NewClient(o.cl)
	md, err := adm.Metadata(octx, o.cfg.Topic)
	if err != nil {
		return -1, o.reachError("metadata", err)
	}
	td, ok := md.Topics[o.cfg.Topic]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return -1, connectors.Fatal(fmt.Errorf("topic %q does not exist on %s", o.cfg.Topic, o.cfg.BootstrapServers))
	}
	if td.Err != nil {
		return -1, o.reachError("metadata of "+o.cfg.Topic, td.Err)
	}
	// Fence first: once the producer id is ours, no earlier producer of
	// this output can commit, so the position read next stays true.
	if _, _, err := o.cl.ProducerID(octx); err != nil {
		return -1, o.reachError("init producer id", err)
	}
	v, held, err := o.delivered(octx, adm, base)
	if err != nil {
		return -1, err
	}
	if v < 0 {
		return -1, nil
	}
	return v, o.p.CheckTableID(held)
}

func (o *Output) reachError(what string, err error) error {
	return o.in.reachError(what, err)
}

// positionStep is how many offsets Open reads back at a time from the end
// of a partition when it looks for the last committed message.
const positionStep = 16

// delivered reads, for each partition, backwards from its last stable
// offset in growing windows until it finds a committed data message, and
// returns the largest VersionHeader found and the TableHeader beside it,
// or -1 when no partition has one. Aborted messages are invisible (read_committed); transaction
// markers are read (KeepControlRecords) so that a window ending in one is
// known to be read to its end.
func (o *Output) delivered(ctx context.Context, adm *kadm.Client, base []kgo.Opt) (int64, string, error) {
	topic := o.cfg.Topic
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return -1, "", o.reachError("list end offsets", err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return -1, "", o.reachError("list start offsets", err)
	}
	type window struct{ from, to, start int64 } // read [from, to); the log starts at start
	todo := map[int32]*window{}
	ends.Each(func(e kadm.ListedOffset) {
		s, _ := starts.Lookup(e.Topic, e.Partition)
		if e.Offset > s.Offset {
			todo[e.Partition] = &window{from: max(s.Offset, e.Offset-positionStep), to: e.Offset, start: s.Offset}
		}
	})
	best, held := int64(-1), ""
	for step := int64(positionStep); len(todo) > 0; step *= 4 {
		consume := map[int32]kgo.Offset{}
		for p, w := range todo {
			consume[p] = kgo.NewOffset().At(w.from)
		}
		found, err := o.readWindows(ctx, base, consume, func(p int32) int64 { return todo[p].to })
		if err != nil {
			return -1, "", err
		}
		for p, w := range todo {
			if f, ok := found[p]; ok || w.from <= w.start {
				if ok && f.version > best {
					best, held = f.version, f.table
				}
				delete(todo, p)
				continue
			}
			w.to, w.from = w.from, max(w.start, w.from-step*4)
		}
	}
	return best, held, nil
}

// position is a message's VersionHeader and TableHeader.
type position struct {
	version int64
	table   string
}

// readWindows consumes the given partitions from their offsets up to
// end(p) (exclusive) with read_committed and returns, per partition, the
// position of the last data message that has a VersionHeader.
func (o *Output) readWindows(ctx context.Context, base []kgo.Opt, from map[int32]kgo.Offset, end func(int32) int64) (map[int32]position, error) {
	cl, err := kgo.NewClient(append(base[:len(base):len(base)],
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.cfg.Topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return nil, connectors.Fatal(err)
	}
	defer cl.Close()
	found := map[int32]position{}
	open := len(from)
	done := map[int32]bool{}
	// A window whose last offsets are aborted messages and no marker
	// (another producer's) never shows its end: give up waiting after
	// a quiet while and keep what was read.
	quiet := 2 * time.Second
	for open > 0 {
		pctx, cancel := context.WithTimeout(ctx, quiet)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil, o.reachError("read position", ctx.Err())
		}
		progressed := false
		for _, fe := range fs.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
				continue
			}
			return nil, o.reachError(fmt.Sprintf("read position of %s/%d", fe.Topic, fe.Partition), fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if done[r.Partition] {
				return
			}
			progressed = true
			if r.Offset >= end(r.Partition) {
				done[r.Partition] = true
				open--
				return
			}
			if !r.Attrs.IsControl() {
				pos := position{version: -1}
				for _, h := range r.Headers {
					switch h.Key {
					case VersionHeader:
						if v, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil {
							pos.version = v
						}
					case TableHeader:
						pos.table = string(h.Value)
					}
				}
				if pos.version >= 0 {
					found[r.Partition] = pos
				}
			}
			if r.Offset == end(r.Partition)-1 {
				done[r.Partition] = true
				open--
			}
		})
		if !progressed {
			break
		}
	}
	return found, nil
}

// Write produces one message per change of b into the open transaction,
// beginning one if needed. Messages are sent in the background; a failed
// send is returned by a later Write or by Commit.
func (o *Output) Write(ctx context.Context, b connectors.ChangeBatch) error {
	if o.cl == nil {
		return errors.New("kafka_output: Write before Open")
	}
	if err := o.firstErr(); err != nil {
		return err
	}
	if !o.inTxn {
		if err := o.cl.BeginTransaction(); err != nil {
			return fmt.Errorf("kafka_output: begin transaction: %w", err)
		}
		o.inTxn = true
	}
	rec := b.Record
	version := []byte(strconv.FormatInt(b.Version, 10))
	var table []byte
	if o.p.TableID != "" {
		table = []byte(o.p.TableID)
	}
	var keys [][]byte
	if o.keyEnc != nil {
		var err error
		if keys, err = o.encodeKeys(rec); err != nil {
			o.encodeErrors.Add(rec.NumRows())
			return connectors.Fatal(fmt.Errorf("kafka_output: encode keys of version %d: %w", b.Version, err))
		}
	}
	var buf []byte
	for i := range int(rec.NumRows()) {
		start := len(buf)
		var err error
		if buf, err = o.enc.Encode(buf, rec, i); err != nil {
			// Feldera's num_encode_errors: the change is not sent.
			o.encodeErrors.Add(1)
			continue
		}
		v := buf[start:len(buf):len(buf)]
		h := make([]kgo.RecordHeader, len(o.headers), len(o.headers)+2)
		copy(h, o.headers)
		h = append(h, kgo.RecordHeader{Key: VersionHeader, Value: version})
		if table != nil {
			h = append(h, kgo.RecordHeader{Key: TableHeader, Value: table})
		}
		r := &kgo.Record{Value: v, Headers: h}
		if keys != nil {
			r.Key = keys[i]
		}
		o.bytes.Add(int64(len(v)))
		o.cl.Produce(ctx, r, o.promise)
	}
	return o.firstErr()
}

func (o *Output) promise(_ *kgo.Record, err error) {
	if err == nil {
		return
	}
	o.mu.Lock()
	if o.sendErr == nil {
		o.sendErr = err
	}
	o.mu.Unlock()
}

func (o *Output) firstErr() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sendErr != nil {
		return fmt.Errorf("kafka_output: produce: %w", o.sendErr)
	}
	return nil
}

// Commit flushes the open transaction and commits it: its messages become
// visible to read_committed consumers, and their VersionHeader is the new
// position. Without messages since the last Commit it does nothing: the
// versions it covers had no changes, and delivering them again after a
// restart sends nothing. A producer fenced by a newer one gets an error.
func (o *Output) Commit(ctx context.Context, version int64) error {
	if !o.inTxn {
		return nil
	}
	if err := o.cl.Flush(ctx); err != nil {
		return fmt.Errorf("kafka_output: flush: %w", err)
	}
	try := kgo.TryCommit
	sendErr := o.firstErr()
	if sendErr != nil {
		try = kgo.TryAbort
	}
	err := o.cl.EndTransaction(ctx, try)
	o.inTxn = false
	o.mu.Lock()
	o.sendErr = nil
	o.mu.Unlock()
	if sendErr != nil {
		return fmt.Errorf("kafka_output: version %d not committed: %w", version, sendErr)
	}
	if err != nil {
		if errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) {
			return fmt.Errorf("kafka_output: commit version %d: fenced by a newer producer of %s: %w", version, TransactionalID(o.p.Pipeline, o.p.Table, o.p.Connector), err)
		}
		return fmt.Errorf("kafka_output: commit version %d: %w", version, err)
	}
	return nil
}

// Close aborts the open transaction, if any, and closes the producer.
func (o *Output) Close() error {
	if o.cl == nil {
		return nil
	}
	var err error
	if o.inTxn {
		ctx, cancel := context.WithTimeout(context.Background(), o.timeout())
		if aerr := o.cl.AbortBufferedRecords(ctx); aerr == nil {
			err = o.cl.EndTransaction(ctx, kgo.TryAbort)
		}
		cancel()
		o.inTxn = false
	}
	o.cl.Close()
	o.cl = nil
	if err != nil && !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidProducerEpoch) {
		return fmt.Errorf("kafka_output: abort: %w", err)
	}
	return nil
}

// newKeyEncoder returns the encoder of message keys: the primary key
// columns as a JSON object, in json's value shapes.
func newKeyEncoder(p connectors.SinkParams, key []int) (format.Encoder, *arrow.Schema, error) {
	if len(key) == 0 {
		return nil, nil, nil
	}
	fields := make([]arrow.Field, len(key))
	for i, k := range key {
		fields[i] = p.Schema.Field(k)
	}
	schema := arrow.NewSchema(fields, nil)
	enc, err := format.NewEncoder(&pipeline.Format{Name: "json", Config: json.RawMessage(`{"update_format": "raw"}`)}, schema)
	return enc, pipeline.WithWeight(schema), err
}

// encodeKeys returns, per row, the key columns as a JSON object.
func (o *Output) encodeKeys(rec arrow.RecordBatch) ([][]byte, error) {
	n := int(rec.NumRows())
	ones := array.NewInt64Builder(o.p.Alloc())
	defer ones.Release()
	for range n {
		ones.Append(1) // the raw encoder writes inserts only
	}
	w := ones.NewArray()
	defer w.Release()
	cols := make([]arrow.Array, 0, len(o.key)+1)
	for _, k := range o.key {
		cols = append(cols, rec.Column(k))
	}
	cols = append(cols, w)
	kr := array.NewRecordBatch(o.keySchema, cols, int64(n))
	defer kr.Release()
	out := make([][]byte, n)
	var buf []byte
	for r := range out {
		start := len(buf)
		var err error
		if buf, err = o.keyEnc.Encode(buf, kr, r); err != nil {
			return nil, err
		}
		out[r] = buf[start:len(buf):len(buf)]
	}
	return out, nil
}
