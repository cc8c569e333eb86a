package metrics

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/activities"
)

// gather returns c's samples as "name{pipeline,table,connector}" -> value.
func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			k := fmt.Sprintf("%s{%s,%s,%s}", mf.GetName(), l["pipeline"], l["table"], l["connector"])
			switch {
			case m.GetCounter() != nil:
				out[k] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[k] = m.GetGauge().GetValue()
			default:
				t.Fatalf("%s is neither a counter nor a gauge", k)
			}
		}
	}
	return out
}

func TestCollector(t *testing.T) {
	input := activities.Progress{Commit: 7, Checkpoint: []byte(`{"records":1200}`), Metrics: activities.Metrics{
		TotalBytes: 4096, TotalRecords: 1200, BufferedRecords: 30, NumTransportErrors: 2, NumParseErrors: 3,
	}}
	output := activities.Progress{Commit: 5, Metrics: activities.Metrics{EndOfInput: true}, Output: &activities.OutputMetrics{
		TransmittedRecords: 900, TransmittedBytes: 5000, BufferedRecords: 0, NumEncodeErrors: 1, NumTransportErrors: 4, LagSeconds: 2.5,
	}}
	tests := []struct {
		name    string
		observe func(c *Collector)
		want    map[string]float64
	}{{
		name: "input",
		observe: func(c *Collector) {
			c.Observe("p", "t", "in", input)
		},
		want: map[string]float64{
			"sluice_input_records_total{p,t,in}":          1200,
			"sluice_input_bytes_total{p,t,in}":            4096,
			"sluice_input_buffered_records{p,t,in}":       30,
			"sluice_input_parse_errors_total{p,t,in}":     3,
			"sluice_input_transport_errors_total{p,t,in}": 2,
			"sluice_input_end_of_input{p,t,in}":           0,
		},
	}, {
		name: "output",
		observe: func(c *Collector) {
			c.Observe("p", "t", "out", output)
		},
		want: map[string]float64{
			"sluice_output_records_total{p,t,out}":          900,
			"sluice_output_bytes_total{p,t,out}":            5000,
			"sluice_output_buffered_records{p,t,out}":       0,
			"sluice_output_encode_errors_total{p,t,out}":    1,
			"sluice_output_transport_errors_total{p,t,out}": 4,
			"sluice_output_lag_seconds{p,t,out}":            2.5,
			"sluice_output_end_of_input{p,t,out}":           1,
		},
	}, {
		name: "the latest progress of each connector",
		observe: func(c *Collector) {
			c.Observe("p", "t", "in", input)
			done := input
			done.Metrics.TotalRecords, done.Metrics.BufferedRecords, done.Metrics.EndOfInput = 1500, 0, true
			c.Observe("p", "t", "in", done)
			c.Observe("q", "t", "in", activities.Progress{Metrics: activities.Metrics{TotalRecords: 1}})
		},
		want: map[string]float64{
			"sluice_input_records_total{p,t,in}":          1500,
			"sluice_input_bytes_total{p,t,in}":            4096,
			"sluice_input_buffered_records{p,t,in}":       0,
			"sluice_input_parse_errors_total{p,t,in}":     3,
			"sluice_input_transport_errors_total{p,t,in}": 2,
			"sluice_input_end_of_input{p,t,in}":           1,
			"sluice_input_records_total{q,t,in}":          1,
			"sluice_input_bytes_total{q,t,in}":            0,
			"sluice_input_buffered_records{q,t,in}":       0,
			"sluice_input_parse_errors_total{q,t,in}":     0,
			"sluice_input_transport_errors_total{q,t,in}": 0,
			"sluice_input_end_of_input{q,t,in}":           0,
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCollector(0)
			tc.observe(c)
			require.Equal(t, tc.want, gather(t, c))
			problems, err := testutil.CollectAndLint(c)
			require.NoError(t, err)
			require.Empty(t, problems, "promlint")
			require.Equal(t, len(tc.want), testutil.CollectAndCount(c))
		})
	}
}

// TestCollectorKeepsItsCopy: the observer's progress is the caller's to
// change once Observe returns.
func TestCollectorKeepsItsCopy(t *testing.T) {
	c := NewCollector(0)
	p := activities.Progress{Output: &activities.OutputMetrics{TransmittedRecords: 10}}
	c.Observe("p", "t", "out", p)
	p.Output.TransmittedRecords = 99
	require.Equal(t, 10.0, gather(t, c)["sluice_output_records_total{p,t,out}"])
}

func TestCollectorExpiry(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewCollector(0)
	c.now = func() time.Time { return now }
	c.Observe("p", "t", "running", activities.Progress{Metrics: activities.Metrics{TotalRecords: 5, BufferedRecords: 2}})
	c.Observe("p", "t", "finished", activities.Progress{Metrics: activities.Metrics{TotalRecords: 9, EndOfInput: true}})
	c.Observe("p", "t", "draining", activities.Progress{Metrics: activities.Metrics{TotalRecords: 9, EndOfInput: true, BufferedRecords: 1}})
	c.Observe("p", "t", "delivered", activities.Progress{Metrics: activities.Metrics{EndOfInput: true}, Output: &activities.OutputMetrics{TransmittedRecords: 9}})
	connectors := func() []string {
		var out []string
		for k := range gather(t, c) {
			if name, labels, _ := strings.Cut(k, "{"); name == InputRecords || name == OutputRecords {
				out = append(out, strings.TrimSuffix(strings.TrimPrefix(labels, "p,t,"), "}"))
			}
		}
		sort.Strings(out)
		return out
	}
	require.Equal(t, []string{"delivered", "draining", "finished", "running"}, connectors())

	now = now.Add(DefaultExpiry)
	require.Equal(t, []string{"delivered", "draining", "finished", "running"}, connectors(), "kept for the expiry")
	c.Observe("p", "t", "running", activities.Progress{Metrics: activities.Metrics{TotalRecords: 6}})
	now = now.Add(time.Second)
	require.Equal(t, []string{"delivered", "finished", "running"}, connectors(), "unfinished connectors without news expire")

	now = now.Add(FinishedExpiry)
	require.Empty(t, connectors(), "finished connectors expire too, later")
	c.Observe("p", "t", "finished", activities.Progress{Metrics: activities.Metrics{TotalRecords: 9, EndOfInput: true}})
	require.Equal(t, []string{"finished"}, connectors(), "news brings a connector back")
}

func TestNames(t *testing.T) {
	names := Names()
	require.Equal(t, []string{
		"sluice_input_records_total", "sluice_input_bytes_total", "sluice_input_buffered_records",
		"sluice_input_parse_errors_total", "sluice_input_transport_errors_total", "sluice_input_end_of_input",
		"sluice_output_records_total", "sluice_output_bytes_total", "sluice_output_buffered_records",
		"sluice_output_encode_errors_total", "sluice_output_transport_errors_total", "sluice_output_lag_seconds",
		"sluice_output_end_of_input",
	}, names)
	c := NewCollector(0)
	c.Observe("p", "t", "in", activities.Progress{})
	c.Observe("p", "t", "out", activities.Progress{Output: &activities.OutputMetrics{}})
	got := map[string]bool{}
	for k := range gather(t, c) {
		name, _, _ := strings.Cut(k, "{")
		got[name] = true
	}
	require.Len(t, got, len(names), "every name is exported, and only those")
	for _, n := range names {
		require.True(t, got[n], n)
	}
}
