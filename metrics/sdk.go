package metrics

import (
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
)

// SDKReportInterval is how often the Temporal SDK's metrics reach the
// registry.
const SDKReportInterval = time.Second

// NewSDKHandler returns a Temporal SDK metrics handler, for
// client.Options.MetricsHandler, that registers the SDK's metrics on reg
// (workers' polls and slots, workflow and activity task latencies and
// failures, requests to the server, ...), and the closer that stops its
// reporting. It is the SDK's tally handler (go.temporal.io/sdk/contrib/tally)
// on tally's Prometheus reporter, with Prometheus naming: the SDK's names
// already start with temporal_ (temporal_request_total,
// temporal_activity_execution_latency_seconds, ...); timers are
// histograms. A metric the SDK emits with two different sets of labels
// cannot be registered twice: its second form is dropped, with a
// warning on logger (nil: slog.Default()).
func NewSDKHandler(reg prometheus.Registerer, logger *slog.Logger) (client.MetricsHandler, io.Closer) {
	if logger == nil {
		logger = slog.Default()
	}
	reporter := tallyprom.NewReporter(tallyprom.Options{
		Registerer:       reg,
		DefaultTimerType: tallyprom.HistogramTimerType,
		OnRegisterError: func(err error) {
			logger.Warn("temporal SDK metric not exported", "error", err)
		},
	})
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:         reporter,
		Separator:              tallyprom.DefaultSeparator,
		SanitizeOptions:        &sdktally.PrometheusSanitizeOptions,
		OmitCardinalityMetrics: true,
	}, SDKReportInterval)
	return sdktally.NewMetricsHandler(sdktally.NewPrometheusNamingScope(scope)), closer
}
