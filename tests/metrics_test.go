package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/workflows"
)

// scrape is one GET of a /metrics endpoint, parsed.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t *testing.T, base string) scrape {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var p expfmt.TextParser
	mfs, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return mfs
}

// value is the sample of name for the connector (ok false: none).
func (s scrape) value(name, pipelineName, table, connector string) (float64, bool) {
	mf := s[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		if len(l) != 3 || l["pipeline"] != pipelineName || l["table"] != table || l["connector"] != connector {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// must is the sample of name for the connector, which must be there.
func (s scrape) must(t *testing.T, name, pipelineName, table, connector string) float64 {
	t.Helper()
	v, ok := s.value(name, pipelineName, table, connector)
	require.True(t, ok, "%s{pipeline=%q,table=%q,connector=%q} is missing", name, pipelineName, table, connector)
	return v
}

// temporal lists the Temporal SDK's metric families of the scrape.
func (s scrape) temporal() []string {
	var names []string
	for n := range s {
		if strings.HasPrefix(n, "temporal_") {
			names = append(names, n)
		}
	}
	return names
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metricsPipeline is a datagen of n ids at rate records/s
// with a file_output of the table.
func metricsPipeline(t *testing.T, name string, n, rate int) *pipeline.Pipeline {
	p := &pipeline.Pipeline{Name: name, StopAtEndOfInput: true, Tables: []pipeline.Table{{
		Name:    "events",
		Columns: []pipeline.Column{{Name: "id", Type: "BIGINT"}},
		Connectors: []pipeline.Connector{{
			Name: "gen", CommitIntervalMs: 200, MaxBatchSize: 1000,
			Transport: pipeline.Transport{Name: "datagen", Config: json.RawMessage(fmt.Sprintf(
				`{"plan": [{"limit": %d, "rate": %d, "fields": {"id": {"strategy": "increment", "range": [0, 100000000]}}}]}`, n, rate))},
		}, {
			Name: "file", Transport: pipeline.Transport{Name: "file_output", Config: json.RawMessage(
				fmt.Sprintf(`{"path": %q}`, filepath.Join(t.TempDir(), "events.json")))},
			Format: &pipeline.Format{Name: "json"},
		}},
	}}}
	require.NoError(t, pipeline.Validate(p, builtin.Registry()))
	return p
}

// checkFinished checks a finished pipeline's scrape against its stats:
// every connector's metrics equal its stats, with end of input.
func checkFinished(t *testing.T, s scrape, name string, final workflows.PipelineStats) {
	t.Helper()
	require.Len(t, final.Inputs, 1)
	require.Len(t, final.Outputs, 1)
	in, out := final.Inputs[0], final.Outputs[0]
	require.Equal(t, "events.gen", in.EndpointName)
	require.Equal(t, "events.file", out.EndpointName)
	require.True(t, in.Metrics.EndOfInput)
	require.Equal(t, float64(in.Metrics.TotalRecords), s.must(t, metrics.InputRecords, name, "events", "gen"))
	require.Equal(t, float64(in.Metrics.TotalBytes), s.must(t, metrics.InputBytes, name, "events", "gen"))
	require.Equal(t, float64(in.Metrics.BufferedRecords), s.must(t, metrics.InputBufferedRecords, name, "events", "gen"))
	require.Equal(t, float64(in.Metrics.NumParseErrors), s.must(t, metrics.InputParseErrors, name, "events", "gen"))
	require.Equal(t, float64(in.Metrics.NumTransportErrors), s.must(t, metrics.InputTransportErrors, name, "events", "gen"))
	require.Equal(t, 1.0, s.must(t, metrics.InputEndOfInput, name, "events", "gen"))

	require.NotNil(t, out.OutputMetrics)
	o := out.OutputMetrics
	require.Equal(t, float64(o.TransmittedRecords), s.must(t, metrics.OutputRecords, name, "events", "file"))
	require.Equal(t, float64(o.TransmittedBytes), s.must(t, metrics.OutputBytes, name, "events", "file"))
	require.Equal(t, float64(o.BufferedRecords), s.must(t, metrics.OutputBufferedRecords, name, "events", "file"))
	require.Equal(t, float64(o.NumEncodeErrors), s.must(t, metrics.OutputEncodeErrors, name, "events", "file"))
	require.Equal(t, float64(o.NumTransportErrors), s.must(t, metrics.OutputTransportErrors, name, "events", "file"))
	require.Equal(t, o.LagSeconds, s.must(t, metrics.OutputLag, name, "events", "file"))
	require.Equal(t, 1.0, s.must(t, metrics.OutputEndOfInput, name, "events", "file"))

	// An input has no output metrics, an output no input metrics.
	_, ok := s.value(metrics.OutputRecords, name, "events", "gen")
	require.False(t, ok)
	_, ok = s.value(metrics.InputRecords, name, "events", "file")
	require.False(t, ok)
}

// TestMetrics runs a pipeline (a datagen input and a file_output) on a
// worker with the metrics collector and the SDK's metrics handler, and
// scrapes /metrics over HTTP while it runs and once it finished: the
// connectors' metrics are their stats, and the SDK's metrics are there.
func TestMetrics(t *testing.T) {
	ts, c := newServer(t)
	dataDir := t.TempDir()

	reg := prometheus.NewRegistry()
	collector := metrics.NewCollector(0)
	reg.MustRegister(collector)
	handler, closer := metrics.NewSDKHandler(reg, nil)
	t.Cleanup(func() { _ = closer.Close() })
	var started atomic.Bool
	srv, err := metrics.Serve("127.0.0.1:0", reg, started.Load)
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	base := "http://" + srv.Addr()

	code, _ := httpGet(t, base+"/healthz")
	require.Equal(t, http.StatusServiceUnavailable, code, "not ready before the worker started")
	w := sluice.NewWorker(ts.NewClientWithOptions(client.Options{MetricsHandler: handler}),
		sluice.WorkerOptions{Registry: builtin.Registry(), DataDir: dataDir, Observer: collector})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	started.Store(true)
	code, body := httpGet(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok", strings.TrimSpace(body))

	const n = 6000
	name := fmt.Sprintf("metrics%d", rand.IntN(1<<30))
	run := startPipeline(t, c, workflows.Input{Pipeline: *metricsPipeline(t, name, n, 1000)})

	// While it runs: some records committed, not all, no end of input;
	// the counter only grows.
	var during []float64
	eventually(t, time.Minute, "a scrape while the input runs", func() bool {
		s := scrapeMetrics(t, base)
		records, ok := s.value(metrics.InputRecords, name, "events", "gen")
		if !ok || records == 0 {
			return false
		}
		require.LessOrEqual(t, records, float64(n))
		if len(during) > 0 {
			require.GreaterOrEqual(t, records, during[len(during)-1], "a counter never goes down")
		}
		during = append(during, records)
		if records == n {
			return false // finished already: look for an earlier run in vain
		}
		require.Equal(t, 0.0, s.must(t, metrics.InputEndOfInput, name, "events", "gen"))
		s.must(t, metrics.InputBufferedRecords, name, "events", "gen")
		s.must(t, metrics.OutputRecords, name, "events", "file")
		// The worker observes each heartbeat before it sends it: the
		// metrics are never behind the stats.
		live := connector(stats(t, c, name), "events.gen").Metrics.TotalRecords
		after := scrapeMetrics(t, base).must(t, metrics.InputRecords, name, "events", "gen")
		require.LessOrEqual(t, float64(live), after)
		return true
	})

	final := finish(t, run)
	require.Equal(t, int64(n), final.Inputs[0].Metrics.TotalRecords)
	require.Equal(t, int64(n), final.Outputs[0].OutputMetrics.TransmittedRecords)
	s := scrapeMetrics(t, base)
	checkFinished(t, s, name, final)
	require.Equal(t, float64(n), s.must(t, metrics.InputRecords, name, "events", "gen"))
	require.Equal(t, 0.0, s.must(t, metrics.InputBufferedRecords, name, "events", "gen"))

	// The SDK's metrics are reported once a second.
	eventually(t, 30*time.Second, "the Temporal SDK's metrics", func() bool {
		s := scrapeMetrics(t, base)
		return s["temporal_request_total"] != nil && s["temporal_activity_execution_latency_seconds"] != nil &&
			s["temporal_workflow_completed_total"] != nil
	})
	s = scrapeMetrics(t, base)
	t.Logf("Temporal SDK metrics: %s", strings.Join(s.temporal(), " "))
	checkFinished(t, s, name, stats(t, c, name))
}

// TestMetricsWorkerProcess runs the worker command with --metrics-addr:
// /healthz answers once it polls, and /metrics has the pipeline's
// connectors, the SDK's metrics and the Go runtime's.
func TestMetricsWorkerProcess(t *testing.T) {
	ts, c := newServer(t)
	dataDir := t.TempDir()
	bin := buildBinary(t, "worker", t.TempDir())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	var logs lockedBuffer
	cmd := exec.Command(bin, "--data-dir", dataDir, "--metrics-addr", addr)
	cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+ts.GetFrontendHostPort(), "TEMPORAL_NAMESPACE="+ts.GetDefaultNamespace())
	cmd.Stderr = &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := "http://" + addr
	eventually(t, time.Minute, "the worker's /healthz says ok", func() bool {
		code, _ := httpGet(t, base+"/healthz")
		return code == http.StatusOK
	})

	name := fmt.Sprintf("metricsproc%d", rand.IntN(1<<30))
	final := finish(t, startPipeline(t, c, workflows.Input{Pipeline: *metricsPipeline(t, name, 500, 100_000)}))
	require.Equal(t, int64(500), final.Inputs[0].Metrics.TotalRecords)
	eventually(t, 30*time.Second, "the SDK's metrics", func() bool {
		return scrapeMetrics(t, base)["temporal_request_total"] != nil
	})
	s := scrapeMetrics(t, base)
	checkFinished(t, s, name, final)
	require.NotNil(t, s["go_goroutines"], "the Go runtime's metrics")
	require.NotNil(t, s["process_resident_memory_bytes"], "the process's metrics")
	require.Contains(t, logs.String(), "metrics at http://"+addr+"/metrics")
}
