package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/activities"
)

// DefaultExpiry is how long a [Collector] keeps exporting a connector
// that it has not heard of, unless the connector finished. Running
// connectors heartbeat about once a second, so only a connector that
// stopped on this worker (paused, failed, or moved to another worker)
// goes that long without news; its last values stay long enough to be
// scraped, then it disappears from this worker's metrics.
const DefaultExpiry = 2 * time.Minute

// FinishedExpiry is how long a [Collector] keeps a connector that
// finished (an input at end of input with nothing buffered, an output
// that delivered every version) after its last news: its final values
// stay on the worker that ran it last, for dashboards and alerts, but a
// worker that runs for months does not keep every connector it ever
// finished.
const FinishedExpiry = 24 * time.Hour

// The metrics' names. They mirror the Prometheus names of Feldera's
// connector metrics (crates/adapters/src/controller/mod.rs, documented at
// https://docs.feldera.com/operations/metrics), with Sluice's prefix and
// the fields of Feldera's connector stats (activities.Metrics,
// activities.OutputMetrics); Feldera labels by endpoint
// ("table.connector"), Sluice by pipeline, table and connector.
const (
	// InputRecords is Metrics.TotalRecords, the records committed to
	// the table; Feldera's input_connector_records_total.
	InputRecords = "sluice_input_records_total"
	// InputBytes is Metrics.TotalBytes; Feldera's
	// input_connector_bytes_total.
	InputBytes = "sluice_input_bytes_total"
	// InputBufferedRecords is Metrics.BufferedRecords, read but not yet
	// committed; Feldera's input_connector_buffered_records.
	InputBufferedRecords = "sluice_input_buffered_records"
	// InputParseErrors is Metrics.NumParseErrors; Feldera's
	// input_connector_errors_parse_total.
	InputParseErrors = "sluice_input_parse_errors_total"
	// InputTransportErrors is Metrics.NumTransportErrors; Feldera's
	// input_connector_errors_transport_total.
	InputTransportErrors = "sluice_input_transport_errors_total"
	// InputEndOfInput is 1 once the source has no more records
	// (Metrics.EndOfInput), else 0; Feldera has it only in its stats
	// (metrics.end_of_input).
	InputEndOfInput = "sluice_input_end_of_input"

	// OutputRecords is OutputMetrics.TransmittedRecords, the changes
	// committed to the destination; Feldera's
	// output_connector_records_total.
	OutputRecords = "sluice_output_records_total"
	// OutputBytes is OutputMetrics.TransmittedBytes, for sinks that count
	// them (0 for the others); Feldera's output_connector_bytes_total.
	OutputBytes = "sluice_output_bytes_total"
	// OutputBufferedRecords is OutputMetrics.BufferedRecords, written
	// but not yet committed; Feldera's output_connector_buffered_records.
	OutputBufferedRecords = "sluice_output_buffered_records"
	// OutputEncodeErrors is OutputMetrics.NumEncodeErrors; Feldera's
	// output_connector_errors_encode_total.
	OutputEncodeErrors = "sluice_output_encode_errors_total"
	// OutputTransportErrors is OutputMetrics.NumTransportErrors;
	// Feldera's output_connector_errors_transport_total.
	OutputTransportErrors = "sluice_output_transport_errors_total"
	// OutputLag is OutputMetrics.LagSeconds, how long ago the oldest
	// undelivered table version was committed (0 when caught up);
	// Feldera has none.
	OutputLag = "sluice_output_lag_seconds"
	// OutputEndOfInput is 1 once the output delivered every version
	// there will be (Metrics.EndOfInput), else 0.
	OutputEndOfInput = "sluice_output_end_of_input"
)

// Names returns the names of the connector metrics a [Collector]
// exports, inputs' then outputs'.
func Names() []string {
	names := make([]string, len(descs))
	for i, d := range descs {
		names[i] = d.name
	}
	return names
}

// Labels are the connector metrics' labels.
var Labels = []string{"pipeline", "table", "connector"}

type desc struct {
	name   string
	output bool
	kind   prometheus.ValueType
	desc   *prometheus.Desc
	value  func(*entry) float64
}

func newDesc(name string, output bool, kind prometheus.ValueType, help string, value func(*entry) float64) desc {
	return desc{name: name, output: output, kind: kind, value: value,
		desc: prometheus.NewDesc(name, help, Labels, nil)}
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var descs = []desc{
	newDesc(InputRecords, false, prometheus.CounterValue,
		"Records an input connector committed to its table, over every activation (Feldera's input_connector_records_total).",
		func(e *entry) float64 { return float64(e.in.TotalRecords) }),
	newDesc(InputBytes, false, prometheus.CounterValue,
		"Source bytes an input connector ingested, over every activation; 0 for sources that do not count them (Feldera's input_connector_bytes_total).",
		func(e *entry) float64 { return float64(e.in.TotalBytes) }),
	newDesc(InputBufferedRecords, false, prometheus.GaugeValue,
		"Records an input connector has read but not yet committed (Feldera's input_connector_buffered_records).",
		func(e *entry) float64 { return float64(e.in.BufferedRecords) }),
	newDesc(InputParseErrors, false, prometheus.CounterValue,
		"Malformed records an input connector skipped, over every activation (Feldera's input_connector_errors_parse_total).",
		func(e *entry) float64 { return float64(e.in.NumParseErrors) }),
	newDesc(InputTransportErrors, false, prometheus.CounterValue,
		"Source errors of an input connector that were retried, over every activation (Feldera's input_connector_errors_transport_total).",
		func(e *entry) float64 { return float64(e.in.NumTransportErrors) }),
	newDesc(InputEndOfInput, false, prometheus.GaugeValue,
		"1 once an input connector's source has no more records (end of input), else 0.",
		func(e *entry) float64 { return bit(e.in.EndOfInput) }),

	newDesc(OutputRecords, true, prometheus.CounterValue,
		"Changes an output connector committed to its destination, over every activation (Feldera's output_connector_records_total).",
		func(e *entry) float64 { return float64(e.out.TransmittedRecords) }),
	newDesc(OutputBytes, true, prometheus.CounterValue,
		"Bytes an output connector sent, for sinks that count them, over every activation (Feldera's output_connector_bytes_total).",
		func(e *entry) float64 { return float64(e.out.TransmittedBytes) }),
	newDesc(OutputBufferedRecords, true, prometheus.GaugeValue,
		"Changes an output connector has written but not yet committed (Feldera's output_connector_buffered_records).",
		func(e *entry) float64 { return float64(e.out.BufferedRecords) }),
	newDesc(OutputEncodeErrors, true, prometheus.CounterValue,
		"Changes an output connector could not encode, over every activation (Feldera's output_connector_errors_encode_total).",
		func(e *entry) float64 { return float64(e.out.NumEncodeErrors) }),
	newDesc(OutputTransportErrors, true, prometheus.CounterValue,
		"Failed delivery attempts of an output connector that were retried, over every activation (Feldera's output_connector_errors_transport_total).",
		func(e *entry) float64 { return float64(e.out.NumTransportErrors) }),
	newDesc(OutputLag, true, prometheus.GaugeValue,
		"How long ago the oldest table version an output connector has not delivered was committed, in seconds; 0 when caught up.",
		func(e *entry) float64 { return e.out.LagSeconds }),
	newDesc(OutputEndOfInput, true, prometheus.GaugeValue,
		"1 once an output connector has delivered every table version there will be, else 0.",
		func(e *entry) float64 { return bit(e.in.EndOfInput) }),
}

// Collector is a prometheus.Collector of the connectors that run on a
// worker, and the worker's activities.Observer (sluice.WorkerOptions
// .Observer): it keeps each connector's latest progress and exports it,
// labelled pipeline, table and connector, as the metrics of [Names]
// (inputs' or outputs'). The values are exported as reported, counters
// as counters: they are cumulative over the connector's activations and
// survive a move to another worker, since they are carried in its
// checkpointed progress.
//
// A connector not observed for [DefaultExpiry] (it stopped on this
// worker: paused, failed, or moved to another) is dropped, and one that
// finished is kept for [FinishedExpiry]. The latest observation wins.
//
// Its methods are safe for concurrent use.
type Collector struct {
	expiry time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[key]*entry
}

type key struct{ pipeline, table, connector string }

// entry is a connector's latest progress, as the metrics need it.
type entry struct {
	in     activities.Metrics
	out    activities.OutputMetrics
	output bool
	seen   time.Time
}

// finished is an input at end of input with nothing buffered, or an
// output that delivered every version.
func (e *entry) finished() bool {
	if e.output {
		return e.in.EndOfInput && e.out.BufferedRecords == 0
	}
	return e.in.EndOfInput && e.in.BufferedRecords == 0
}

// NewCollector returns a collector that drops a connector not observed
// for expiry (0: [DefaultExpiry]) unless it finished. Register it on a
// prometheus.Registry and pass it to the worker as its Observer.
func NewCollector(expiry time.Duration) *Collector {
	if expiry <= 0 {
		expiry = DefaultExpiry
	}
	return &Collector{expiry: expiry, now: time.Now, entries: map[key]*entry{}}
}

var _ activities.Observer = (*Collector)(nil)

// Observe records a connector's progress (activities.Observer).
func (c *Collector) Observe(pipeline, table, connector string, p activities.Progress) {
	e := &entry{in: p.Metrics, output: p.Output != nil}
	if p.Output != nil {
		e.out = *p.Output
	}
	c.mu.Lock()
	e.seen = c.now()
	c.entries[key{pipeline, table, connector}] = e
	c.mu.Unlock()
}

// Describe sends the descriptions of the metrics of [Names]
// (prometheus.Collector).
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range descs {
		ch <- d.desc
	}
}

// Collect sends each connector's metrics (prometheus.Collector), after
// dropping the connectors that expired.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	type kv struct {
		k key
		e *entry
	}
	c.mu.Lock()
	now := c.now()
	live := make([]kv, 0, len(c.entries))
	for k, e := range c.entries {
		ttl := c.expiry
		if e.finished() {
			ttl = max(ttl, FinishedExpiry)
		}
		if now.Sub(e.seen) > ttl {
			delete(c.entries, k)
			continue
		}
		live = append(live, kv{k, e}) // entries are replaced, never changed
	}
	c.mu.Unlock()
	for _, x := range live {
		for _, d := range descs {
			if d.output != x.e.output {
				continue
			}
			ch <- prometheus.MustNewConstMetric(d.desc, d.kind, d.value(x.e), x.k.pipeline, x.k.table, x.k.connector)
		}
	}
}
