package pubsub_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	ps "cloud.google.com/go/pubsub/v2"

	"github.com/sluicehq/sluice/connectors"
)

// BenchmarkRead reads 20,000 messages per iteration from pstest with 32
// streams: with pub_sub_input (parse, batch, acknowledge after Committed)
// and, as the baseline, with the Pub/Sub client's own Receive acking
// each message as it arrives. It reports both rates and their ratio
// (sluice/client; 1 is as fast as the bare client). pstest delivers one
// message per stream every 10 ms, which bounds both.
//
//	go test -run '^$' -bench BenchmarkRead -benchtime 3x ./connectors/pubsub/
func BenchmarkRead(b *testing.B) {
	const n = 20_000
	f := newFake(b)
	sluiceSub := f.subscription(b, "bench-sluice", false)
	clientSub := f.subscription(b, "bench-client", false)
	var sluiceTime, clientTime time.Duration
	for i := 0; b.Loop(); i++ {
		f.publish(i*n, (i+1)*n) // to both subscriptions

		src := source(b, f, map[string]any{"subscription": sluiceSub, "pool_size": 32})
		start := time.Now()
		if err := src.Open(context.Background(), nil); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		for got := int64(0); got < n; {
			batch, err := src.Read(ctx)
			if err != nil {
				b.Fatal(err)
			}
			got += batch.Rows()
			batch.Record.Release()
			if err := src.(connectors.Committer).Committed(ctx, batch.Checkpoint); err != nil {
				b.Fatal(err)
			}
		}
		sluiceTime += time.Since(start)
		cancel()
		src.Close()

		sub := f.client.Subscriber(clientSub)
		sub.ReceiveSettings.NumGoroutines = 32
		var got atomic.Int64
		rctx, stop := context.WithCancel(context.Background())
		start = time.Now()
		err := sub.Receive(rctx, func(_ context.Context, m *ps.Message) {
			m.Ack()
			if got.Add(1) == n {
				stop()
			}
		})
		clientTime += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
	}
	iters := float64(b.N)
	b.ReportMetric(n*iters/sluiceTime.Seconds(), "sluice_msgs/s")
	b.ReportMetric(n*iters/clientTime.Seconds(), "client_msgs/s")
	b.ReportMetric(sluiceTime.Seconds()/clientTime.Seconds(), "time_ratio")
}
