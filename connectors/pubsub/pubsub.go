package pubsub

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials"
	ps "cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/format"
)

// RedeliveryWindow is how long a message ID that was committed but whose
// acknowledgement is not known to have reached Pub/Sub (the checkpoint's
// IDs at Open, a failed acknowledgement) is remembered after it was last
// seen: a redelivery within it is acknowledged and dropped (and, with
// exactly-once delivery, forgotten once that acknowledgement is
// confirmed). Pub/Sub makes an unacknowledged message available again
// once its ack deadline (at most 600 s) has passed; a backlog that delays
// its redelivery past the window makes it a duplicate.
var RedeliveryWindow = time.Hour

// MaxHeld bounds the messages received and not yet acknowledged (the
// Receive callback blocks beyond it), and so the IDs a checkpoint lists:
// about twice this many at most, some 800 KB of JSON with Pub/Sub's
// 19-digit IDs, under Temporal's 2 MB limit on heartbeat details.
var MaxHeld = 20_000

// AckTimeout bounds the wait for the confirmation of an acknowledgement
// (exactly-once delivery); unconfirmed then, its ID is remembered for
// RedeliveryWindow.
var AckTimeout = time.Minute

// AckGrace is how long, without exactly-once delivery, the ID of an
// acknowledged message stays in the checkpoints: long enough for the
// client to have sent the acknowledgement (it batches them every
// 100 ms), so that a crash just after a commit does not lose it with the
// ID already forgotten. Pub/Sub may still redeliver an acknowledged
// message later (at least once).
var AckGrace = 2 * time.Second

// CloseWait bounds how long Close waits for pending confirmations.
var CloseWait = 10 * time.Second

// MaxOutstandingBytes is the client's flow control by bytes: it bounds
// the messages being handed to the source, not those it holds until their
// commit (MaxHeld does).
var MaxOutstandingBytes = 256 << 20

// Checkpoint is pub_sub_input's position. Pub/Sub has no offsets: the
// subscription itself remembers what was acknowledged, and Sluice
// acknowledges a message only once the table store has committed it. What
// the checkpoint adds is the IDs of the messages committed but not yet
// known to be acknowledged, so that their redelivery after a crash is
// recognised and dropped.
type Checkpoint struct {
	// Unacked lists the IDs of messages in this or an earlier commit whose
	// acknowledgement is not yet confirmed.
	Unacked []string `json:"unacked"`
	// Batch numbers the source's batches: the checkpoint of batch N
	// covers the messages of batches up to N.
	Batch int64 `json:"batch"`
	// Seek records the Seek made at first activation ("timestamp
	// 2024-08-17T16:39:57Z", "snapshot projects/p/snapshots/s"), or is
	// empty.
	Seek string `json:"seek,omitempty"`
}

// Source reads a Pub/Sub subscription with streaming pull
// (cloud.google.com/go/pubsub/v2). Each message is one document of the
// connector's format. It never reaches end of input.
type Source struct {
	p       connectors.Params
	cfg     Config
	parser  format.Parser
	rows    *format.Rows
	client  *ps.Client
	subName string // projects/P/subscriptions/S
	eod     bool   // the subscription has exactly-once delivery
	seek    string // Checkpoint.Seek

	msgs    chan *ps.Message
	slots   chan struct{}      // one per message held: received, not yet acked or nacked
	cancel  context.CancelFunc // stops Receive
	done    chan struct{}      // closed when Receive has returned
	recvErr error              // Receive's error, once done is closed
	acks    sync.WaitGroup     // goroutines awaiting acknowledgement confirmations
	ackCtx  context.Context    // theirs: canceled by Close
	ackStop context.CancelFunc

	mu    sync.Mutex
	batch int64                // the last batch's number
	gen   int64                // Committed calls so far
	ids   map[string]*delivery // the checkpoint's IDs
}

// delivery is what the source knows of one message ID.
type delivery struct {
	batch int64         // the batch that returned it
	msgs  []*ps.Message // its deliveries to acknowledge once committed; nil once acknowledged
	acked int64         // the Committed call that saw its acknowledgement confirmed (0: not yet)
	ackAt time.Time     // when it was confirmed (or, without exactly-once delivery, sent)
	until time.Time     // set: committed before, acknowledgement unknown; forget it then
}

var (
	_ connectors.Source     = (*Source)(nil)
	_ connectors.Resolver   = (*Source)(nil)
	_ connectors.Committer  = (*Source)(nil)
	_ connectors.Guaranteed = (*Source)(nil)
)

// New is pub_sub_input's factory: it validates the config and builds the
// message parser (no I/O).
func New(p connectors.Params) (connectors.Source, error) {
	cfg, err := ParseConfig(p.Config)
	if err != nil {
		return nil, err
	}
	parser, err := format.NewParser(p.Format, p.Schema)
	if err != nil {
		return nil, err
	}
	return &Source{p: p, cfg: cfg, parser: parser}, nil
}

// Guarantee implements connectors.Guaranteed: exactly once with
// exactly_once_delivery (which Open checks against the subscription), at
// least once otherwise: without Pub/Sub's exactly-once delivery an
// acknowledgement can be lost and its message redelivered after the
// redelivery window.
func (s *Source) Guarantee() connectors.Guarantee {
	if s.cfg.ExactlyOnceDelivery {
		return connectors.ExactlyOnce
	}
	return connectors.AtLeastOnce
}

// connect creates the client, once, and reads the subscription: a missing
// subscription, refused credentials or a subscription without
// exactly-once delivery under exactly_once_delivery are fatal.
func (s *Source) connect(ctx context.Context) error {
	if s.client != nil {
		return nil
	}
	var opts []option.ClientOption
	if s.cfg.Credentials != "" {
		creds, err := parseCredentials(s.cfg.Credentials)
		if err != nil {
			return connectors.Fatal(fmt.Errorf("pub/sub credentials: %s", scrub(err.Error(), s.cfg.Credentials)))
		}
		if s.cfg.Emulator == "" {
			opts = append(opts, option.WithAuthCredentials(creds))
		}
	}
	if s.cfg.Emulator != "" {
		opts = append(opts,
			option.WithEndpoint(s.cfg.Emulator),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
			option.WithoutAuthentication(),
			option.WithTelemetryDisabled())
	} else if s.cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(s.cfg.Endpoint))
	}
	if s.cfg.PoolSize != nil {
		opts = append(opts, option.WithGRPCConnectionPool(*s.cfg.PoolSize))
	}
	project := s.cfg.project()
	if project == "" {
		if s.cfg.Emulator != "" {
			return connectors.Fatal(fmt.Errorf("pub/sub: project_id is required with emulator (or give the subscription as projects/PROJECT/subscriptions/ID)"))
		}
		project = ps.DetectProjectID
	}
	cctx, cancel := context.WithTimeout(ctx, seconds(s.cfg.ConnectTimeoutSeconds, DefaultConnectTimeout))
	defer cancel()
	client, err := ps.NewClient(cctx, project, opts...)
	if err != nil {
		return connectors.Fatal(fmt.Errorf("pub/sub client: %w", err))
	}
	s.client = client
	s.subName = fullName(s.cfg.Subscription, "subscriptions", client.Project())
	rctx, rcancel := context.WithTimeout(ctx, seconds(s.cfg.TimeoutSeconds, DefaultTimeout))
	defer rcancel()
	sub, err := client.SubscriptionAdminClient.GetSubscription(rctx, &pubsubpb.GetSubscriptionRequest{Subscription: s.subName})
	if err != nil {
		return s.classify("read subscription "+s.subName, err)
	}
	s.eod = sub.GetEnableExactlyOnceDelivery()
	if s.cfg.ExactlyOnceDelivery && !s.eod {
		return connectors.Fatal(fmt.Errorf("pub/sub subscription %s does not have exactly-once delivery enabled, which exactly_once_delivery requires", s.subName))
	}
	return nil
}

// classify turns a Pub/Sub error into a fatal error where retrying cannot
// help: a missing subscription or snapshot, refused credentials, a bad
// request, or a service that stays unreachable past the connect timeout.
func (s *Source) classify(what string, err error) error {
	switch status.Code(err) {
	case codes.NotFound:
		return connectors.Fatal(fmt.Errorf("pub/sub %s: not found (%s)", what, status.Convert(err).Message()))
	case codes.PermissionDenied, codes.Unauthenticated:
		return connectors.Fatal(fmt.Errorf("pub/sub %s: credentials refused: %w", what, err))
	case codes.InvalidArgument, codes.FailedPrecondition:
		return connectors.Fatal(fmt.Errorf("pub/sub %s: %w", what, err))
	case codes.Unavailable, codes.DeadlineExceeded:
		return connectors.Fatal(fmt.Errorf("pub/sub %s: service unreachable: %w", what, err))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return connectors.Fatal(fmt.Errorf("pub/sub %s: service unreachable (no answer within the timeout): %w", what, err))
	}
	return fmt.Errorf("pub/sub %s: %w", what, err)
}

// Resolve reads the subscription and, with snapshot or timestamp, seeks
// it there: the Pipeline workflow calls it once, at the connector's first
// activation, and keeps the checkpoint it returns (which records the
// seek), so that a restart never seeks again.
func (s *Source) Resolve(ctx context.Context) (connectors.Checkpoint, error) {
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	req := &pubsubpb.SeekRequest{Subscription: s.subName}
	cp := Checkpoint{Unacked: []string{}}
	switch {
	case s.cfg.Snapshot != "":
		name := fullName(s.cfg.Snapshot, "snapshots", s.client.Project())
		req.Target = &pubsubpb.SeekRequest_Snapshot{Snapshot: name}
		cp.Seek = "snapshot " + name
	case s.cfg.Timestamp != "":
		t, _ := s.cfg.seekTime() // validated
		req.Target = &pubsubpb.SeekRequest_Time{Time: timestamppb.New(t)}
		cp.Seek = "timestamp " + t.UTC().Format(time.RFC3339Nano)
	}
	if req.Target != nil {
		rctx, cancel := context.WithTimeout(ctx, seconds(s.cfg.TimeoutSeconds, DefaultTimeout))
		defer cancel()
		if _, err := s.client.SubscriptionAdminClient.Seek(rctx, req); err != nil {
			return nil, s.classify("seek "+s.subName+" to "+cp.Seek, err)
		}
	}
	return json.Marshal(cp)
}

// Open reads the subscription and starts pulling. A nil checkpoint is
// resolved first (see Resolve); the checkpoint's IDs are remembered for
// RedeliveryWindow, their redeliveries acknowledged and dropped.
func (s *Source) Open(ctx context.Context, checkpoint connectors.Checkpoint) error {
	if len(checkpoint) == 0 || string(checkpoint) == "null" {
		var err error
		if checkpoint, err = s.Resolve(ctx); err != nil {
			return err
		}
	}
	var cp Checkpoint
	if err := json.Unmarshal(checkpoint, &cp); err != nil || cp.Unacked == nil {
		return connectors.Fatal(fmt.Errorf("pub/sub checkpoint: not {\"unacked\": [...]}"))
	}
	if err := s.connect(ctx); err != nil {
		return err
	}
	s.seek, s.batch = cp.Seek, cp.Batch
	s.ids = make(map[string]*delivery, len(cp.Unacked))
	until := time.Now().Add(RedeliveryWindow)
	for _, id := range cp.Unacked {
		s.ids[id] = &delivery{until: until}
	}
	s.rows = format.NewRows(s.p.Alloc(), s.p.Schema)

	// Flow control bounds what is received and not yet acknowledged,
	// that is not yet committed: two batches' worth, so that the next
	// batch arrives while one commits.
	outstanding := min(max(1000, 2*s.p.BatchSize), MaxHeld)
	sub := s.client.Subscriber(s.subName)
	sub.ReceiveSettings.MaxOutstandingMessages = outstanding
	sub.ReceiveSettings.MaxOutstandingBytes = MaxOutstandingBytes
	if s.cfg.PoolSize != nil {
		sub.ReceiveSettings.NumGoroutines = *s.cfg.PoolSize
	}
	// Close nacks what was received and not committed, so that it goes
	// back at once, and Receive returns once those nacks are sent: the
	// graceful shutdown (no timeout). A timed one returns before its
	// iterators flush, and ShutdownBehaviorNackImmediately drops the
	// nacks already queued (its sendModAck short-circuits once shutdown
	// starts).
	sub.ReceiveSettings.ShutdownOptions = &ps.ShutdownOptions{Behavior: ps.ShutdownBehaviorWaitForProcessing, Timeout: -1}
	s.msgs = make(chan *ps.Message, outstanding)
	s.slots = make(chan struct{}, outstanding)
	s.done = make(chan struct{})
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.ackCtx, s.ackStop = context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer close(s.done)
		s.recvErr = sub.Receive(rctx, func(ctx context.Context, m *ps.Message) {
			// The client's flow control counts a message until this
			// returns; the slot counts it until it is acked or nacked.
			select {
			case s.slots <- struct{}{}:
			case <-ctx.Done():
				m.Nack()
				return
			}
			s.msgs <- m // as deep as slots: never blocks
		})
	}()
	return nil
}

// Read returns the messages received next, at most BatchSize, parsed
// into a record batch, with the checkpoint that covers them. It waits for
// a first message; redeliveries of committed messages are acknowledged
// and dropped.
func (s *Source) Read(ctx context.Context) (connectors.Batch, error) {
	for {
		var first *ps.Message
		select {
		case first = <-s.msgs:
		case <-s.done:
			if s.recvErr != nil {
				return connectors.Batch{}, s.classify("receive from "+s.subName, s.recvErr)
			}
			return connectors.Batch{}, fmt.Errorf("pub/sub receive from %s stopped", s.subName)
		case <-ctx.Done():
			return connectors.Batch{}, ctx.Err()
		}
		got := []*ps.Message{first}
	drain:
		for len(got) < s.p.BatchSize {
			select {
			case m := <-s.msgs:
				got = append(got, m)
			default:
				break drain
			}
		}
		s.mu.Lock()
		s.batch++
		fresh := got[:0]
		var dropped []*ps.Message
		for _, m := range got {
			d, ok := s.ids[m.ID]
			switch {
			case !ok:
				s.ids[m.ID] = &delivery{batch: s.batch, msgs: []*ps.Message{m}}
				fresh = append(fresh, m)
			case d.msgs != nil:
				// Delivered again before its commit: acknowledged with it.
				d.msgs = append(d.msgs, m)
			default:
				// Committed already (before a crash, or just now):
				// remembered as long again as it keeps coming.
				if !d.until.IsZero() {
					d.until = time.Now().Add(RedeliveryWindow)
				}
				dropped = append(dropped, m)
			}
		}
		cp := s.checkpoint()
		s.mu.Unlock()
		s.ackDropped(dropped)
		if len(fresh) == 0 {
			continue
		}
		var b connectors.Batch
		for _, m := range fresh {
			b.Bytes += int64(len(m.Data))
			for _, e := range format.ParseMessage(s.parser, m.Data, s.rows) {
				pos := "message " + m.ID
				if e.Position != "byte 0" {
					pos += ", " + e.Position
				}
				e.Position = pos
				b.Errors = append(b.Errors, e)
			}
		}
		b.Record = s.rows.NewRecordBatch()
		b.Checkpoint = cp
		return b, nil
	}
}

// ackDropped acknowledges redeliveries of committed messages. With
// exactly-once delivery a confirmed acknowledgement ends the message's
// redeliveries, and its ID is forgotten.
func (s *Source) ackDropped(msgs []*ps.Message) {
	if len(msgs) == 0 {
		return
	}
	s.ack(msgs, func(errs []error) {
		if !s.eod {
			return // nothing confirmed: the ID waits for its window
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, err := range errs {
			if d := s.ids[msgs[i].ID]; err == nil && d != nil && d.msgs == nil {
				delete(s.ids, msgs[i].ID)
			}
		}
	})
}

// ack acknowledges msgs, freeing their slots, and passes the outcome of
// each to settled: without exactly-once delivery at once and all nil
// (Pub/Sub confirms nothing); with it, from a goroutine once Pub/Sub has
// confirmed or refused each, or AckTimeout has passed (Close waits for
// these goroutines).
func (s *Source) ack(msgs []*ps.Message, settled func(errs []error)) {
	if !s.eod {
		for _, m := range msgs {
			m.Ack()
			s.release()
		}
		settled(make([]error, len(msgs)))
		return
	}
	results := make([]*ps.AckResult, len(msgs))
	for i, m := range msgs {
		results[i] = m.AckWithResult()
		s.release()
	}
	s.acks.Add(1)
	go func() {
		defer s.acks.Done()
		ctx, cancel := context.WithTimeout(s.ackCtx, AckTimeout)
		defer cancel()
		errs := make([]error, len(results))
		for i, r := range results {
			st, err := r.Get(ctx)
			if err == nil && st != ps.AcknowledgeStatusSuccess {
				err = fmt.Errorf("acknowledgement status %d", st)
			}
			errs[i] = err
		}
		settled(errs)
	}()
}

// release frees the slot of a message just acked or nacked.
func (s *Source) release() {
	select {
	case <-s.slots:
	default:
	}
}

// checkpoint returns the checkpoint of the current batch. s.mu is held.
func (s *Source) checkpoint() connectors.Checkpoint {
	cp := Checkpoint{Unacked: make([]string, 0, len(s.ids)), Batch: s.batch, Seek: s.seek}
	now := time.Now()
	for id, d := range s.ids {
		if !d.until.IsZero() && now.After(d.until) {
			delete(s.ids, id)
			continue
		}
		cp.Unacked = append(cp.Unacked, id)
	}
	raw, _ := json.Marshal(cp) // strings only: cannot fail
	return raw
}

// Committed implements connectors.Committer: it acknowledges the messages
// of the batches up to the committed checkpoint's. With exactly-once
// delivery it waits for the confirmations in the background (for at most
// AckTimeout, whatever ctx, which only bounds the call); an ID stays
// in the checkpoints until a commit after its confirmed acknowledgement,
// or, if the acknowledgement failed, for RedeliveryWindow.
func (s *Source) Committed(ctx context.Context, checkpoint connectors.Checkpoint) error {
	var cp struct {
		Batch int64 `json:"batch"`
	}
	if err := json.Unmarshal(checkpoint, &cp); err != nil {
		return fmt.Errorf("pub/sub: committed checkpoint: %w", err)
	}
	now := time.Now()
	s.mu.Lock()
	s.gen++
	gen := s.gen
	var ids []string
	var msgs []*ps.Message
	for id, d := range s.ids {
		switch {
		case d.acked > 0 && d.acked < gen && now.Sub(d.ackAt) >= s.grace():
			delete(s.ids, id) // in a checkpoint committed after its acknowledgement
		case d.msgs != nil && d.batch <= cp.Batch:
			for _, m := range d.msgs {
				ids = append(ids, id)
				msgs = append(msgs, m)
			}
			d.msgs = nil
		}
	}
	s.mu.Unlock()
	if len(msgs) == 0 {
		return nil
	}
	// Without exactly-once delivery an acknowledgement is never
	// confirmed: the ID stays for AckGrace (the client sends its
	// acknowledgements every 100 ms) and one commit, then goes.
	s.ack(msgs, func(errs []error) { s.settle(ids, errs) })
	return nil
}

// grace is how long after its acknowledgement an ID stays in the
// checkpoints: none once confirmed (exactly-once delivery), AckGrace
// otherwise.
func (s *Source) grace() time.Duration {
	if s.eod {
		return 0
	}
	return AckGrace
}

// settle records the outcome of acknowledging ids: confirmed (exactly-once
// delivery), an ID is forgotten, since the message will not come again;
// sent (without it), the ID leaves at a commit AckGrace later; failed, it
// is remembered for RedeliveryWindow.
func (s *Source) settle(ids []string, errs []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	until := time.Now().Add(RedeliveryWindow)
	for i, id := range ids {
		d := s.ids[id]
		if d == nil {
			continue
		}
		if errs[i] != nil {
			d.until = until
			d.acked = 0
			continue
		}
		if d.until.IsZero() {
			if s.eod && d.msgs == nil {
				delete(s.ids, id)
				continue
			}
			// Deleted by a later Committed: the commit it reports holds
			// a checkpoint with the ID, made after the acknowledgement.
			d.acked = max(s.gen, 1)
			d.ackAt = time.Now()
		}
	}
}

// Close stops pulling: the messages received and not committed are
// negatively acknowledged, to be redelivered at once.
func (s *Source) Close() error {
	if s.cancel != nil {
		// The confirmations of what was committed first, while the
		// stream that carries them is up.
		waited := make(chan struct{})
		go func() { s.acks.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(CloseWait):
		}
		s.ackStop()
		// What was returned and not committed goes back at once (no
		// commit acknowledges it any more).
		s.mu.Lock()
		for _, d := range s.ids {
			for _, m := range d.msgs {
				m.Nack()
				s.release()
			}
			d.msgs = nil
		}
		s.mu.Unlock()
		s.cancel()
		giveUp := time.After(3 * CloseWait)
		for {
			select {
			case m := <-s.msgs:
				m.Nack()
				s.release()
				continue
			case <-s.done:
			case <-giveUp: // unsent nacks expire at their ack deadline
			}
			break
		}
		for len(s.msgs) > 0 { // what the last callbacks queued
			(<-s.msgs).Nack()
		}
		s.acks.Wait()
		s.cancel = nil
	}
	if s.client != nil {
		s.client.Close()
		s.client = nil
	}
	if s.rows != nil {
		s.rows.Release()
		s.rows = nil
	}
	return nil
}

// scrub replaces in msg every string value of the credentials JSON
// (a key, a client e-mail, a type a library error quotes back), so that no
// part of the secret reaches an error message.
func scrub(msg, credentials string) string {
	var values map[string]any
	if json.Unmarshal([]byte(credentials), &values) != nil {
		return "not a credentials JSON object"
	}
	for _, v := range values {
		if s, ok := v.(string); ok && s != "" {
			msg = strings.ReplaceAll(msg, s, "***")
		}
	}
	return msg
}

// AcceptedCredentials are the credential file types pub_sub_input takes:
// a service account key and a user's (gcloud auth application-default
// login). Other types (external_account, impersonated_service_account)
// make the worker read files and call URLs the file names, which a
// pipeline's author must not choose for the worker's machine.
var AcceptedCredentials = []credentials.CredType{credentials.ServiceAccount, credentials.AuthorizedUser}

// parseCredentials reads a credentials file's content of an accepted type,
// and checks a service account's private_key, which the auth library
// parses only when it first needs a token: a broken key fails Open,
// before anything is read (and also with an emulator, which takes no
// credentials), rather than the first request.
func parseCredentials(raw string) (*auth.Credentials, error) {
	var file struct {
		Type       string `json:"type"`
		PrivateKey string `json:"private_key"`
	}
	if err := json.Unmarshal([]byte(raw), &file); err != nil {
		return nil, errors.New("not a credentials JSON object")
	}
	if !slices.Contains(AcceptedCredentials, credentials.CredType(file.Type)) {
		return nil, fmt.Errorf("the type of these credentials is not accepted: give a %s or %s file", credentials.ServiceAccount, credentials.AuthorizedUser)
	}
	creds, err := credentials.NewCredentialsFromJSON(credentials.CredType(file.Type), []byte(raw), &credentials.DetectOptions{
		Scopes: []string{"https://www.googleapis.com/auth/pubsub"},
	})
	if err != nil {
		return nil, err
	}
	if file.Type != string(credentials.ServiceAccount) {
		return creds, nil
	}
	block, _ := pem.Decode([]byte(file.PrivateKey))
	if block == nil {
		return nil, errors.New("the service account's private_key is not PEM-encoded")
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		if _, err1 := x509.ParsePKCS1PrivateKey(block.Bytes); err1 != nil {
			return nil, fmt.Errorf("the service account's private_key is not a PKCS #8 or PKCS #1 key: %w", err)
		}
	}
	return creds, nil
}
