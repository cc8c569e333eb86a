package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/format"
)

// ConnectTimeout bounds how long Open and Resolve wait for the brokers'
// metadata before they report the brokers unreachable.
var ConnectTimeout = 10 * time.Second

// DiscoverInterval is how often a running source asks the brokers for the
// partitions of its topics, to start reading the partitions added since it
// started. Each check costs at most one Metadata request (franz-go's cached
// metadata answers it when fresh), plus a ListOffsets request when a new
// partition shows up. Sources with enable.partition.eof or an explicit
// partitions list do not check, nor does any source while it is zero or
// negative.
var DiscoverInterval = 5 * time.Second

// Checkpoint is kafka_input's checkpoint: the next offset to read of every
// partition, and with enable.partition.eof the end offsets fixed at first
// activation. Partition numbers are JSON object keys:
// {"offsets": {"orders": {"0": 42, "1": 17}}, "end": {"orders": {"0": 100, "1": 90}}}.
//
// A partition added to a topic after first activation joins Offsets at its
// start offset when the running source discovers it (see DiscoverInterval),
// and from then on advances like the others. A partition of a checkpointed
// topic that Offsets lacks (added while the connector was paused, or
// discovered but not yet committed when the worker died) is therefore read
// from its start once the source is opened again, which is neither a gap
// nor a duplicate: none of its records was committed. Without enable.partition.eof and
// without a partitions list this is how every checkpoint is read, older
// ones included; the format has not changed.
type Checkpoint struct {
	Offsets map[string]map[int32]int64 `json:"offsets"`
	End     map[string]map[int32]int64 `json:"end,omitempty"`
}

// Source reads Kafka messages and parses each message's value with the
// connector's format (json or csv; a message may hold several records).
// A message that does not parse is reported in Batch.Errors with its
// topic, partition and offset.
type Source struct {
	p      connectors.Params
	cfg    Config
	parser format.Parser
	rows   *format.Rows
	opts   []kgo.Opt
	cl     *kgo.Client
	cp     Checkpoint
	done   bool // every partition reached its end (enable.partition.eof)
	// discoverAt is when Read next looks for added partitions (zero: at
	// the first Read).
	discoverAt time.Time
}

// New builds a kafka_input source from p; nothing is contacted until
// Open or Resolve. Config errors are connectors.FieldErrors.
func New(p connectors.Params) (connectors.Source, error) {
	cfg, err := ParseConfig(p.Config)
	parser, perr := format.NewParser(p.Format, p.Schema)
	if p.Format != nil && p.Format.Name == "parquet" {
		perr = &connectors.FieldError{Section: "format", Field: "name", Err: fmt.Errorf("kafka_input reads json or csv messages")}
	}
	if err := errors.Join(err, perr); err != nil {
		return nil, err
	}
	return &Source{p: p, cfg: cfg, parser: parser}, nil
}

// Bounded reports whether the connector reaches end of input: only with
// enable.partition.eof.
func (s *Source) Bounded() bool { return bool(s.cfg.EnablePartitionEOF) }

// clientOpts returns the franz-go options for the brokers and security
// settings; files named by ssl.*.location are read here.
func (s *Source) clientOpts() ([]kgo.Opt, error) {
	if s.opts != nil {
		return s.opts, nil
	}
	c := s.cfg
	var seeds []string
	for _, b := range strings.Split(c.BootstrapServers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			seeds = append(seeds, b)
		}
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.ClientID("sluice"),
		kgo.DialTimeout(ConnectTimeout),
	}
	proto := strings.ToLower(c.SecurityProtocol)
	if proto == "ssl" || proto == "sasl_ssl" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.EnableSSLCertificateVerification != nil && !bool(*c.EnableSSLCertificateVerification) {
			tc.InsecureSkipVerify = true
		}
		pem := []byte(c.SSLCAPEM)
		if c.SSLCALocation != "" {
			b, err := os.ReadFile(c.SSLCALocation)
			if err != nil {
				return nil, connectors.Fatal(fmt.Errorf("ssl.ca.location: %w", err))
			}
			pem = append(pem, b...)
		}
		if len(pem) > 0 {
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, connectors.Fatal(errors.New("ssl.ca.location/ssl.ca.pem: no PEM certificates found"))
			}
		}
		if c.SSLCertificateLocation != "" {
			cert, err := tls.LoadX509KeyPair(c.SSLCertificateLocation, c.SSLKeyLocation)
			if err != nil {
				return nil, connectors.Fatal(fmt.Errorf("ssl.certificate.location: %w", err))
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if strings.HasPrefix(proto, "sasl") {
		switch c.Mechanism() {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: c.SASLUsername, Pass: c.SASLPassword}.AsMechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUsername, Pass: c.SASLPassword}.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUsername, Pass: c.SASLPassword}.AsSha512Mechanism()))
		}
	}
	s.opts = opts
	return opts, nil
}

func (s *Source) readCommitted() bool {
	return !strings.EqualFold(s.cfg.IsolationLevel, "read_uncommitted")
}

// Resolve turns start_from and seek into concrete offsets, and with
// enable.partition.eof fixes each partition's end offset. The Pipeline
// workflow calls it once, at first activation, and keeps the result, so
// "latest" and a timestamp mean the moment the connector first started
// however often it restarts. Unreachable brokers, unknown topics and
// partitions and refused credentials are fatal.
func (s *Source) Resolve(ctx context.Context) (connectors.Checkpoint, error) {
	opts, err := s.clientOpts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, connectors.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	parts, err := s.partitions(ctx, adm)
	if err != nil {
		return nil, err
	}
	topics := s.cfg.TopicList()
	cp := Checkpoint{Offsets: map[string]map[int32]int64{}}
	sf := s.cfg.StartFrom
	var listed kadm.ListedOffsets
	switch {
	case sf.Earliest:
		listed, err = adm.ListStartOffsets(ctx, topics...)
	case sf.Timestamp != nil:
		listed, err = adm.ListOffsetsAfterMilli(ctx, *sf.Timestamp, topics...)
	case sf.Latest:
		listed, err = adm.ListEndOffsets(ctx, topics...)
	}
	if err == nil && listed != nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, s.reachError("list offsets", err)
	}
	var ends kadm.ListedOffsets
	if sf.Timestamp != nil || s.cfg.EnablePartitionEOF {
		if s.readCommitted() {
			ends, err = adm.ListCommittedOffsets(ctx, topics...)
		} else {
			ends, err = adm.ListEndOffsets(ctx, topics...)
		}
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return nil, s.reachError("list end offsets", err)
		}
	}
	for _, t := range topics {
		cp.Offsets[t] = map[int32]int64{}
		for _, p := range parts[t] {
			var off int64
			switch {
			case sf.Offsets != nil:
				if int(p) >= len(sf.Offsets) {
					return nil, connectors.Fatal(fmt.Errorf("start_from.offsets: no offset for partition %d of %s", p, t))
				}
				off = sf.Offsets[p]
			default:
				lo, _ := listed.Lookup(t, p)
				off = lo.Offset
				if off < 0 { // no message at or after the timestamp yet: start at the end
					e, _ := ends.Lookup(t, p)
					off = e.Offset
				}
			}
			cp.Offsets[t][p] = off
		}
	}
	for i, sk := range s.cfg.Seek {
		if _, ok := cp.Offsets[sk.Topic][sk.Partition]; !ok {
			return nil, connectors.Fatal(fmt.Errorf("seek[%d]: topic %s has no partition %d", i, sk.Topic, sk.Partition))
		}
		cp.Offsets[sk.Topic][sk.Partition] = sk.Offset
	}
	if s.cfg.EnablePartitionEOF {
		cp.End = map[string]map[int32]int64{}
		for _, t := range topics {
			cp.End[t] = map[int32]int64{}
			for _, p := range parts[t] {
				e, _ := ends.Lookup(t, p)
				cp.End[t][p] = e.Offset
			}
		}
	}
	return json.Marshal(cp)
}

// partitions returns the partitions to read of each topic, sorted.
func (s *Source) partitions(ctx context.Context, adm *kadm.Client) (map[string][]int32, error) {
	md, err := adm.Metadata(ctx, s.cfg.TopicList()...)
	if err != nil {
		return nil, s.reachError("metadata", err)
	}
	out := map[string][]int32{}
	for _, t := range s.cfg.TopicList() {
		td, ok := md.Topics[t]
		if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
			return nil, connectors.Fatal(fmt.Errorf("topic %q does not exist on %s", t, s.cfg.BootstrapServers))
		}
		if td.Err != nil {
			return nil, s.reachError("metadata of "+t, td.Err)
		}
		if len(s.cfg.Partitions) > 0 {
			for _, p := range s.cfg.Partitions {
				if _, ok := td.Partitions[p]; !ok {
					return nil, connectors.Fatal(fmt.Errorf("partitions: topic %s has no partition %d (it has %d)", t, p, len(td.Partitions)))
				}
				out[t] = append(out[t], p)
			}
		} else {
			for p := range td.Partitions {
				out[t] = append(out[t], p)
			}
		}
		sort.Slice(out[t], func(i, j int) bool { return out[t][i] < out[t][j] })
	}
	return out, nil
}

// reachError classifies an error talking to the brokers: authentication
// and authorization failures and unreachable brokers are fatal (a clear
// fatal_error rather than a silent retry loop; `sluice connector start`
// tries again), others are returned for Temporal to retry.
func (s *Source) reachError(what string, err error) error {
	var ke *kerr.Error
	switch {
	case errors.As(err, &ke) && (ke.Code == kerr.SaslAuthenticationFailed.Code || ke.Code == kerr.TopicAuthorizationFailed.Code || ke.Code == kerr.ClusterAuthorizationFailed.Code):
		return connectors.Fatal(fmt.Errorf("kafka %s: %w", what, err))
	case errors.Is(err, context.DeadlineExceeded):
		return connectors.Fatal(fmt.Errorf("kafka brokers %s unreachable: no answer to %s within %s", s.cfg.BootstrapServers, what, ConnectTimeout))
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return connectors.Fatal(fmt.Errorf("kafka brokers %s: TLS: %w (check ssl.ca.location)", s.cfg.BootstrapServers, certErr))
	}
	if errors.Is(err, io.EOF) {
		return connectors.Fatal(fmt.Errorf("kafka brokers %s closed the connection during %s (wrong credentials, or security.protocol does not match the listener?)", s.cfg.BootstrapServers, what))
	}
	var unreachable interface{ Temporary() bool }
	if errors.As(err, &unreachable) || strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such host") {
		return connectors.Fatal(fmt.Errorf("kafka brokers %s unreachable: %w", s.cfg.BootstrapServers, err))
	}
	return fmt.Errorf("kafka %s: %w", what, err)
}

// Open starts consuming every partition at its checkpointed next offset.
// A nil checkpoint is resolved first (see Resolve).
func (s *Source) Open(ctx context.Context, checkpoint connectors.Checkpoint) error {
	if len(checkpoint) == 0 || string(checkpoint) == "null" {
		var err error
		if checkpoint, err = s.Resolve(ctx); err != nil {
			return err
		}
	}
	if err := json.Unmarshal(checkpoint, &s.cp); err != nil || s.cp.Offsets == nil {
		return connectors.Fatal(fmt.Errorf("kafka checkpoint %s: not {\"offsets\": ...}", checkpoint))
	}
	opts, err := s.clientOpts()
	if err != nil {
		return err
	}
	consume := map[string]map[int32]kgo.Offset{}
	for t, ps := range s.cp.Offsets {
		for p, off := range ps {
			if s.reachedEnd(t, p) {
				continue
			}
			if consume[t] == nil {
				consume[t] = map[int32]kgo.Offset{}
			}
			consume[t][p] = kgo.NewOffset().At(off)
		}
	}
	if len(consume) == 0 {
		s.done = bool(s.cfg.EnablePartitionEOF)
		return nil
	}
	reset := kgo.NoResetOffset()
	if s.cfg.ResumeEarliestIfDataExpires {
		reset = kgo.NewOffset().AtStart()
	}
	opts = append(opts[:len(opts):len(opts)],
		kgo.ConsumePartitions(consume),
		kgo.ConsumeResetOffset(reset),
		kgo.KeepControlRecords(), // transaction markers advance the checkpoint
		kgo.FetchMaxWait(200*time.Millisecond),
	)
	if s.discovers() && DiscoverInterval < 5*time.Second {
		// Discovery reads franz-go's metadata cache, fresh for at most
		// MetadataMinAge (5s by default): a shorter interval needs a
		// shorter age to see new partitions sooner.
		opts = append(opts, kgo.MetadataMinAge(max(DiscoverInterval, 10*time.Millisecond)))
	}
	if s.readCommitted() {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	if s.cl, err = kgo.NewClient(opts...); err != nil {
		return connectors.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	if err := s.cl.Ping(pctx); err != nil {
		return s.reachError("connect", err)
	}
	s.rows = format.NewRows(s.p.Alloc(), s.p.Schema)
	return nil
}

// discovers says whether the source reads partitions added after first
// activation: not with enable.partition.eof, whose partitions and ends are
// fixed at first activation, nor with an explicit partitions list.
func (s *Source) discovers() bool {
	return !bool(s.cfg.EnablePartitionEOF) && len(s.cfg.Partitions) == 0 && DiscoverInterval > 0
}

// discover adds the partitions of the checkpointed topics that the
// checkpoint lacks: they are recorded in it at their start offset and
// consumed from there. Errors are left for the next check: the partitions
// already read go on, and fetching reports brokers that stay away.
func (s *Source) discover(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	var topics []string
	for _, t := range s.cfg.TopicList() {
		// A configured topic missing from the checkpoint (the config
		// changed after first activation) is not read: only Resolve
		// says where a topic starts.
		if s.cp.Offsets[t] != nil {
			topics = append(topics, t)
		}
	}
	if len(topics) == 0 {
		return
	}
	adm := kadm.NewClient(s.cl)
	md, err := adm.Metadata(ctx, topics...)
	if err != nil {
		return
	}
	added := map[string]bool{}
	for _, t := range topics {
		td, ok := md.Topics[t]
		if !ok || td.Err != nil {
			continue
		}
		for p := range td.Partitions {
			if _, ok := s.cp.Offsets[t][p]; !ok {
				added[t] = true
			}
		}
	}
	if len(added) == 0 {
		return
	}
	topics = topics[:0]
	for t := range added {
		topics = append(topics, t)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil && len(starts) == 0 {
		return
	}
	consume := map[string]map[int32]kgo.Offset{}
	starts.Each(func(o kadm.ListedOffset) {
		if _, ok := s.cp.Offsets[o.Topic][o.Partition]; ok || o.Err != nil || o.Offset < 0 || s.cp.Offsets[o.Topic] == nil {
			return // known, or not ready yet: the next check tries again
		}
		s.cp.Offsets[o.Topic][o.Partition] = o.Offset
		if consume[o.Topic] == nil {
			consume[o.Topic] = map[int32]kgo.Offset{}
		}
		consume[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset)
	})
	s.cl.AddConsumePartitions(consume)
}

// poll returns the next fetches. A source that discovers partitions
// checks for added ones when that is due and waits no longer than the
// next check.
func (s *Source) poll(ctx context.Context) kgo.Fetches {
	if !s.discovers() {
		return s.cl.PollRecords(ctx, s.p.BatchSize)
	}
	if !time.Now().Before(s.discoverAt) {
		s.discover(ctx)
		s.discoverAt = time.Now().Add(DiscoverInterval)
	}
	// At the deadline PollRecords returns only the deadline error; the
	// records it has not returned stay buffered for the next poll.
	pctx, cancel := context.WithDeadline(ctx, s.discoverAt)
	defer cancel()
	return s.cl.PollRecords(pctx, s.p.BatchSize)
}

// reachedEnd says partition p of topic t has reached its end offset
// (enable.partition.eof only).
func (s *Source) reachedEnd(t string, p int32) bool {
	end, ok := s.cp.End[t][p]
	return ok && s.cp.Offsets[t][p] >= end
}

func (s *Source) allReachedEnd() bool {
	if !s.cfg.EnablePartitionEOF {
		return false
	}
	for t, ps := range s.cp.Offsets {
		for p := range ps {
			if !s.reachedEnd(t, p) {
				return false
			}
		}
	}
	return true
}

// Read returns the records of the messages polled next, at most about
// BatchSize messages, with the checkpoint just past them. With
// enable.partition.eof it returns connectors.ErrEndOfInput once every
// partition has reached its end offset; messages past a partition's end
// are not returned. Otherwise (and without a partitions list) it checks
// every DiscoverInterval for partitions added to the topics and reads them
// from their start; the checkpoint of the batch after that check records
// them.
func (s *Source) Read(ctx context.Context) (connectors.Batch, error) {
	for {
		if s.done || s.allReachedEnd() {
			s.done = true
			return connectors.Batch{}, connectors.ErrEndOfInput
		}
		fs := s.poll(ctx)
		if ctx.Err() != nil {
			return connectors.Batch{}, ctx.Err()
		}
		if err := s.fetchError(fs); err != nil {
			return connectors.Batch{}, err
		}
		var b connectors.Batch
		advanced := false
		var pause map[string][]int32
		fs.EachRecord(func(r *kgo.Record) {
			next := s.cp.Offsets[r.Topic]
			if next == nil || r.Offset < next[r.Partition] || s.reachedEnd(r.Topic, r.Partition) {
				return // before the checkpoint, or past the end of input
			}
			next[r.Partition] = r.Offset + 1
			advanced = true
			if s.reachedEnd(r.Topic, r.Partition) {
				if pause == nil {
					pause = map[string][]int32{}
				}
				pause[r.Topic] = append(pause[r.Topic], r.Partition)
			}
			if r.Attrs.IsControl() || len(r.Value) == 0 {
				return // a transaction marker or a tombstone
			}
			b.Bytes += int64(len(r.Value))
			errs := format.ParseMessage(s.parser, r.Value, s.rows) // each message is a document: csv headers skips its first line
			for _, e := range errs {
				pos := fmt.Sprintf("topic %s partition %d offset %d", r.Topic, r.Partition, r.Offset)
				if e.Position != "byte 0" {
					pos += ", " + e.Position
				}
				e.Position = pos
				b.Errors = append(b.Errors, e)
			}
		})
		if pause != nil {
			s.cl.PauseFetchPartitions(pause)
		}
		if !advanced {
			continue
		}
		b.Record = s.rows.NewRecordBatch()
		cp, err := json.Marshal(s.cp)
		if err != nil {
			b.Record.Release()
			return connectors.Batch{}, err
		}
		b.Checkpoint = cp
		return b, nil
	}
}

// fetchError returns the first fetch error that is not a cancellation.
// An offset that retention has deleted is fatal (messages were lost)
// unless resume_earliest_if_data_expires is set.
func (s *Source) fetchError(fs kgo.Fetches) error {
	for _, fe := range fs.Errors() {
		switch {
		case errors.Is(fe.Err, context.Canceled), errors.Is(fe.Err, context.DeadlineExceeded):
			continue
		case errors.Is(fe.Err, kerr.OffsetOutOfRange):
			return connectors.Fatal(fmt.Errorf("topic %s partition %d: checkpointed offset %d is no longer in the log (deleted by retention?); set resume_earliest_if_data_expires to resume at the log start",
				fe.Topic, fe.Partition, s.cp.Offsets[fe.Topic][fe.Partition]))
		case errors.Is(fe.Err, kgo.ErrClientClosed):
			return fmt.Errorf("kafka client closed")
		}
		return s.reachError(fmt.Sprintf("fetch %s/%d", fe.Topic, fe.Partition), fe.Err)
	}
	return nil
}

// Close closes the client and frees the record builder.
func (s *Source) Close() error {
	if s.cl != nil {
		s.cl.Close()
		s.cl = nil
	}
	if s.rows != nil {
		s.rows.Release()
		s.rows = nil
	}
	return nil
}
