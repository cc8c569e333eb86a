package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ps "cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/stretchr/testify/require"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/workflows"
)

// pubsubFake starts pstest (the Pub/Sub v2 module's fake server, over
// real gRPC) with topic projects/sluice/topics/events and a subscription
// "events-sluice" to it, with exactly-once delivery if eod, and returns
// the server. (With exactly-once delivery the client confirms a receipt
// before it hands over the messages of a response, and pstest sends one
// message per response: a few dozen messages a second.)
func pubsubFake(t *testing.T, eod bool) *pstest.Server {
	srv := pstest.NewServer()
	t.Cleanup(func() { srv.Close() })
	client, err := ps.NewClient(context.Background(), "sluice",
		option.WithEndpoint(srv.Addr),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithoutAuthentication())
	require.NoError(t, err)
	defer client.Close()
	_, err = client.TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: "projects/sluice/topics/events"})
	require.NoError(t, err)
	_, err = client.SubscriptionAdminClient.CreateSubscription(context.Background(), &pubsubpb.Subscription{
		Name: "projects/sluice/subscriptions/events-sluice", Topic: "projects/sluice/topics/events",
		AckDeadlineSeconds: 10, EnableExactlyOnceDelivery: eod,
	})
	require.NoError(t, err)
	return srv
}

// pubsubPipeline reads subscription events-sluice of srv into table
// events (id BIGINT) with pub_sub_input.
func pubsubPipeline(t *testing.T, name string, srv *pstest.Server, batch int, eod bool) *pipeline.Pipeline {
	raw, err := json.Marshal(map[string]any{
		"emulator": srv.Addr, "project_id": "sluice", "subscription": "events-sluice", "exactly_once_delivery": eod,
		// pstest hands each stream one message per 10 ms: 32 streams.
		"pool_size": 32,
	})
	require.NoError(t, err)
	p := &pipeline.Pipeline{Name: name, Tables: []pipeline.Table{{
		Name:    "events",
		Columns: []pipeline.Column{{Name: "id", Type: "BIGINT"}},
		Connectors: []pipeline.Connector{{Name: "ps", MaxBatchSize: batch,
			Transport: pipeline.Transport{Name: "pub_sub_input", Config: raw}, Format: &pipeline.Format{Name: "json"}}},
	}}}
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	return p
}

// TestPubSubCrash publishes 100,000 messages to a subscription while the
// worker process reading it is SIGKILLed three times: every message is in
// the table store exactly once, and every message is acknowledged (after
// its commit). The subscription is without exactly-once delivery, which
// pstest cannot serve at this rate (see pubsubFake): the connector is then
// at least once by contract, the IDs in its checkpoint catching the
// redeliveries of what was committed and not acknowledged when a worker
// died. (Exactly-once delivery's confirmed acknowledgements are tested in
// connectors/pubsub.)
func TestPubSubCrash(t *testing.T) {
	ts, c := newServer(t)
	srv := pubsubFake(t, false)
	const n = 100_000
	dataDir := t.TempDir()
	bin := buildBinary(t, "worker", t.TempDir())
	name := fmt.Sprintf("pubsub%d", rand.IntN(1<<30))
	run := startPipeline(t, c, workflows.Input{Pipeline: *pubsubPipeline(t, name, srv, 2000, false), HeartbeatTimeoutSeconds: 3})

	// About 1,250 messages a second (pstest delivers little more) for 80 s:
	// they arrive while the workers die.
	var published atomic.Int64
	go func() {
		for i := range n {
			srv.Publish("projects/sluice/topics/events", fmt.Appendf(nil, `{"id": %d}`, i), nil)
			if i%500 == 499 {
				published.Store(int64(i + 1))
				time.Sleep(400 * time.Millisecond)
			}
		}
		published.Store(n)
	}()
	committed := inputRecords(c, name)
	var logs strings.Builder
	proc := killDuringInput(t, ts, bin, dataDir, name, []int64{n / 10, 2 * n / 10, 3 * n / 10},
		func() bool { return published.Load() < n }, &logs)
	defer func() { _ = proc.Process.Kill(); _ = proc.Wait() }()
	// What a killed worker had received and not committed is redelivered
	// once its ack deadline passes.
	eventually(t, 4*time.Minute, "every message acknowledged", func() bool {
		for _, m := range srv.Messages() {
			if m.Acks == 0 {
				return false
			}
		}
		return len(srv.Messages()) == n
	})
	eventually(t, time.Minute, "the last commit reported", func() bool { return committed() >= n })
	require.NoError(t, sluice.Command(context.Background(), c, name, workflows.PipelineStop, nil))
	final := finish(t, run)
	require.Nil(t, final.Inputs[0].FatalError, logs.String())
	requireNetOnce(t, dataDir, name, "events", n)
	require.Equal(t, int64(n), final.Inputs[0].Metrics.TotalRecords, "each message counted once")
	redelivered := 0
	for _, m := range srv.Messages() {
		if m.Deliveries > 1 {
			redelivered++
		}
	}
	t.Logf("pub_sub_input: %d messages, worker SIGKILLed 3 times, %d redelivered, each stored once", n, redelivered)
}

// TestPubSubPipeline runs pub_sub_input through the workflow: a
// timestamp seek made once at first activation (the messages published
// before it are not read), and a missing subscription and credentials
// that are not usable as fatal_errors that say why, with no part of the
// credentials in the stats or the workflow history.
func TestPubSubPipeline(t *testing.T) {
	_, c := newServer(t)
	srv := pubsubFake(t, false)
	secret := fmt.Sprintf("s3cr3t%d", rand.Int64())
	t.Setenv("SLUICE_GCP_CREDENTIALS", `{"type": "service_account", "client_email": "sluice@example.iam.gserviceaccount.com", "private_key": "`+secret+`"}`)
	dataDir := t.TempDir()
	startWorker(t, c, dataDir)
	for i := range 10 {
		srv.Publish("projects/sluice/topics/events", fmt.Appendf(nil, `{"id": %d}`, i), nil)
	}
	time.Sleep(20 * time.Millisecond)
	at := time.Now().UTC().Format(time.RFC3339Nano)
	name := fmt.Sprintf("pubsubp%d", rand.IntN(1<<30))
	p, _, err := pipeline.Load(fmt.Appendf(nil, `
name: %s
tables:
  - name: events
    columns: [{name: id, type: BIGINT}]
    connectors:
      - name: live
        transport: {name: pub_sub_input, config: {emulator: %q, project_id: sluice, subscription: events-sluice, timestamp: %q}}
        format: {name: json}
      - name: missing
        transport: {name: pubsub_input, config: {emulator: %q, project_id: sluice, subscription: nosuch}}
        format: {name: json}
      - name: badcreds
        transport: {name: pub_sub_input, config: {emulator: %q, project_id: sluice, subscription: events-sluice, credentials: "${env:SLUICE_GCP_CREDENTIALS}"}}
        format: {name: json}
`, name, srv.Addr, at, srv.Addr, srv.Addr), ".yaml", "")
	require.NoError(t, err)
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	run := startPipeline(t, c, workflows.Input{Pipeline: *p})
	var st workflows.PipelineStats
	eventually(t, time.Minute, "live sought, the others failed", func() bool {
		st = stats(t, c, name)
		for _, m := range srv.Messages() {
			if m.Acks == 0 {
				return false // the seek acknowledges the messages before its time
			}
		}
		return connector(st, "events.missing").FatalError != nil && connector(st, "events.badcreds").FatalError != nil
	})
	// After the seek: pstest loses the messages published between a
	// seek's time and the seek (see TestTimestampSeek in connectors/pubsub).
	for i := 10; i < 30; i++ {
		srv.Publish("projects/sluice/topics/events", fmt.Appendf(nil, `{"id": %d}`, i), nil)
	}
	eventually(t, time.Minute, "20 messages committed", func() bool {
		return connector(stats(t, c, name), "events.live").Metrics.TotalRecords >= 20
	})
	require.Contains(t, *connector(st, "events.missing").FatalError, "subscriptions/nosuch: not found")
	require.Contains(t, *connector(st, "events.badcreds").FatalError, "pub/sub credentials: the service account's private_key is not PEM-encoded")
	require.NoError(t, sluice.Command(context.Background(), c, name, workflows.PipelineStop, nil))
	final := finish(t, run)
	require.Equal(t, int64(20), connector(final, "events.live").Metrics.TotalRecords)
	ids := netIDs(t, dataDir, name, "events")
	require.Len(t, ids, 20)
	for i := int64(10); i < 30; i++ {
		require.Equal(t, int64(1), ids[i], "id %d", i)
	}

	raw, _ := json.Marshal(final)
	require.NotContains(t, string(raw), secret, "stats")
	iter := c.GetWorkflowHistory(context.Background(), pipeline.WorkflowID(name), "", false, 0)
	events := 0
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		b, err := proto.Marshal(ev)
		require.NoError(t, err)
		require.NotContains(t, string(b), secret, "history event %d", ev.GetEventId())
		events++
	}
	require.Positive(t, events)
}
