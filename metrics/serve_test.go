package metrics

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/activities"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestServe(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := NewCollector(0)
	reg.MustRegister(c)
	c.Observe("p", "t", "in", activities.Progress{Metrics: activities.Metrics{TotalRecords: 42}})
	var ready atomic.Bool
	s, err := Serve("127.0.0.1:0", reg, ready.Load)
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Shutdown(context.Background())) }()
	require.NotEqual(t, "127.0.0.1:0", s.Addr())
	base := "http://" + s.Addr()

	code, body := get(t, base+"/healthz")
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	ready.Store(true)
	code, body = get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok", strings.TrimSpace(body))

	code, body = get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `sluice_input_records_total{connector="in",pipeline="p",table="t"} 42`)
	require.Contains(t, body, "# TYPE sluice_input_records_total counter")

	_, err = Serve(s.Addr(), reg, nil)
	require.Error(t, err, "the address is taken")
}

// TestSDKHandler: the Temporal SDK's metrics reach the registry with
// Prometheus names, and a metric emitted with another set of labels is
// dropped, not a panic.
func TestSDKHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	h, closer := NewSDKHandler(reg, nil)
	h.WithTags(map[string]string{"namespace": "default", "operation": "Poll"}).Counter("temporal_request").Inc(3)
	h.WithTags(map[string]string{"namespace": "default"}).Counter("temporal_request").Inc(1)
	h.Timer("temporal_activity_execution_latency").Record(1500 * time.Millisecond)
	h.Gauge("temporal_num_pollers").Update(2)
	require.NoError(t, closer.Close()) // reports what is pending
	mfs, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	require.True(t, got["temporal_request_total"], "%v", got)
	require.True(t, got["temporal_activity_execution_latency_seconds"], "%v", got)
	require.True(t, got["temporal_num_pollers"], "%v", got)
}
